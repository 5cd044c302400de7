"""pydeblur.kernels: parametric kernels against their analytic moments, the angle convention, specs
and the loader, the commands taking a spec, and kernels measured from a point light."""

import math

import numpy as np
import pytest

from pydeblur.cli import main
from pydeblur.colour import linear_to_srgb
from pydeblur.io import read_image, to_integer, write_image
from pydeblur.kernel_io import load_psf, read_psf, write_psf
from pydeblur.kernels import (
    defocus,
    gaussian,
    is_psf_spec,
    motion,
    motion_path,
    parse_psf_spec,
)
from pydeblur.point_light import kernel_from_point_light
from tests.helpers import deblur_args


def moments(kernel):
    """Centre of mass (x, y) relative to the centre element and the covariance [[xx, xy], [xy, yy]]
    (x = columns, y = rows, pixels)."""
    k = kernel.astype(np.float64) / kernel.sum()
    rows, cols = np.indices(k.shape)
    x, y = cols - k.shape[1] // 2, rows - k.shape[0] // 2
    mx, my = (x * k).sum(), (y * k).sum()
    x, y = x - mx, y - my
    cov = np.array([[(x * x * k).sum(), (x * y * k).sum()], [(x * y * k).sum(), (y * y * k).sum()]])
    return (mx, my), cov


def frame(angle):
    """Unit vectors along and across `angle` in (x, y) with y down."""
    a = math.radians(angle)
    return np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])


def assert_kernel(k):
    assert k.dtype == np.float32 and k.ndim == 2
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    assert k.min() >= 0 and abs(float(k.sum()) - 1) < 1e-5


# ---------------------------------------------------------------------------------------------------
# Motion

ANGLES = np.arange(0, 360, 7.5)


@pytest.mark.parametrize("length", [1, 2, 3.3, 9, 15, 30.7, 100])
def test_motion_line_moments(length):
    """Along the line: length^2 / 12 (a uniform segment) + 1/6 (the bilinear interpolation), within
    0.05 px^2; across: 0 at 0/90/180/270 degrees, under 0.2 px^2 at any angle; centred exactly."""
    for angle in ANGLES:
        k = motion(length, angle)
        assert_kernel(k)
        (mx, my), cov = moments(k)
        assert abs(mx) < 1e-6 and abs(my) < 1e-6, angle
        along, across = frame(angle)
        assert abs(along @ cov @ along - (length**2 / 12 + 1 / 6)) < 0.05, angle
        assert abs(along @ cov @ across) < 0.05, angle  # the principal axis is the line
        spread = across @ cov @ across
        assert spread < (1e-12 if angle % 90 == 0 else 0.2), angle


def test_angle_convention_and_sizes():
    horizontal, vertical = motion(9, 0), motion(9, 90)
    assert horizontal.shape == (1, 11) and vertical.shape == (11, 1)
    np.testing.assert_array_equal(horizontal.T, vertical)
    np.testing.assert_allclose(horizontal[0] * 72, [1, 7, 8, 8, 8, 8, 8, 8, 8, 7, 1], atol=1e-4)
    rising = motion(9, 45)  # counter-clockwise on screen: up and to the right
    c = rising.shape[0] // 2
    assert rising[c - 3, c + 3] > 0.05 and rising[c + 3, c - 3] > 0.05
    assert rising[c - 3, c - 3] == 0 and rising[c + 3, c + 3] == 0
    np.testing.assert_allclose(motion(9, 225), rising, atol=1e-7)  # modulo 180
    np.testing.assert_allclose(motion(9, -45), rising[:, ::-1], atol=1e-7)
    (_, _), cov = moments(motion(21, 30))
    principal = np.linalg.eigh(cov)[1][:, -1]  # (x, y) with y down
    assert math.degrees(math.atan2(-principal[1], principal[0])) % 180 == pytest.approx(30, abs=0.5)


def test_motion_path_is_the_streak_centred_on_its_centroid():
    np.testing.assert_allclose(motion_path([(-7.5, 0), (7.5, 0)]), motion(15, 0), atol=1e-7)
    np.testing.assert_allclose(motion_path([(3, 9), (10, 2)]), motion(7 * 2**0.5, 45), atol=1e-6)
    ell = motion_path(
        [(0, 0), (4, 0), (4, 4)]
    )  # right 4, then down 4 (y down): the corner top right
    assert_kernel(ell) and ell.shape == (7, 7)
    (mx, my), _ = moments(ell)
    assert abs(mx) < 1e-6 and abs(my) < 1e-6
    # the centroid (3, 1) is the centre element (3, 3): the first leg on row 2, the second on column 4
    assert ell[2].sum() == pytest.approx(1 / 2 + 1 / 16, abs=1e-4)  # + the second leg's first pixel
    assert ell[:, 4].sum() == pytest.approx(1 / 2 + 1 / 16, abs=1e-4)
    assert ell[2, 0] > 0 and ell[6, 4] > 0 and ell[6, 0] == 0 and ell[0].sum() == 0
    np.testing.assert_allclose(motion_path([(4, 4), (4, 0), (0, 0)]), ell, atol=1e-7)
    curve = motion_path([(10 * math.cos(t), 10 * math.sin(t)) for t in np.linspace(0, 3, 40)])
    assert_kernel(curve)
    assert np.abs(moments(curve)[0]).max() < 1e-6


# ---------------------------------------------------------------------------------------------------
# Defocus


@pytest.mark.parametrize("radius", [0.7, 1.5, 2.7])
def test_defocus_is_the_exact_area_coverage(radius):
    """Against a 200 x 200 supersampling of each pixel: within 5e-5 (the supersampling's error)."""
    k = defocus(radius).astype(np.float64)
    n, sub = k.shape[0], 200
    u = (np.arange(n * sub) + 0.5) / sub - 0.5 - n // 2
    inside = (u[None, :] ** 2 + u[:, None] ** 2 <= radius**2).astype(np.float64)
    cover = inside.reshape(n, sub, n, sub).mean(axis=(1, 3))
    np.testing.assert_allclose(k, cover / cover.sum(), atol=5e-5)


@pytest.mark.parametrize("radius", [0.3, 1, 1.5, 4, 4.2, 7.3, 20])
def test_defocus_area_symmetry_and_moments(radius):
    k = defocus(radius)
    assert_kernel(k)
    assert k.shape == (2 * max(math.ceil(radius - 0.5), 0) + 1,) * 2
    for same in (k.T, k[::-1], k[:, ::-1]):
        np.testing.assert_array_equal(same, k)
    c = k.shape[0] // 2
    if radius >= 1.5:  # a fully covered pixel holds 1 / area: the area is pi r^2
        assert float(k[c, c]) * math.pi * radius**2 == pytest.approx(1, abs=1e-6)
    (mx, my), cov = moments(k)
    assert abs(mx) < 1e-9 and abs(my) < 1e-9 and abs(cov[0, 1]) < 1e-9
    if radius >= 4:
        # a uniform disk: r^2 / 4 per axis, + 1/12 from the pixels' integration (Sheppard)
        assert cov[0, 0] == pytest.approx(radius**2 / 4 + 1 / 12, abs=0.03)
    if radius >= 7:  # rotational symmetry beyond the grid's: E[x^4] = 3 E[x^2 y^2]
        rows, cols = np.indices(k.shape) - c
        ratio = (cols**4 * k).sum() / (3 * (cols**2 * rows**2 * k).sum())
        assert ratio == pytest.approx(1, abs=0.01)


# ---------------------------------------------------------------------------------------------------
# Gaussian


@pytest.mark.parametrize(
    "sigma, sigma2, angle",
    [(1, None, 0), (0.8, 0.8, 17), (2, 0.8, 30), (3, 1.5, -60), (5, 2, 123), (1, 4, 90)],
)
def test_gaussian_covariance(sigma, sigma2, angle):
    """sigma^2 along `angle`, sigma2^2 across, to 0.1 % of the larger variance (the 4-sigma cut)."""
    k = gaussian(sigma, sigma2, angle)
    assert_kernel(k)
    (mx, my), cov = moments(k)
    assert abs(mx) < 1e-6 and abs(my) < 1e-6
    along, across = frame(angle)
    s2 = sigma if sigma2 is None else sigma2
    expected = sigma**2 * np.outer(along, along) + s2**2 * np.outer(across, across)
    np.testing.assert_allclose(cov, expected, atol=1e-3 * max(sigma, s2) ** 2)


def test_gaussian_sizes_and_isotropy():
    assert gaussian(1).shape == (9, 9) and gaussian(2.0, 0.5).shape == (5, 17)
    assert gaussian(2.0, 0.5, 90).shape == (17, 5) and gaussian(1, truncate=2).shape == (5, 5)
    np.testing.assert_allclose(gaussian(1.7, 1.7, 33), gaussian(1.7), atol=1e-7)


# ---------------------------------------------------------------------------------------------------
# Parameters, specs, the loader


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: motion(0.5, 0), "length must be >= 1"),
        (lambda: motion(float("nan")), "length must be finite"),
        (lambda: motion(5, float("inf")), "angle must be finite"),
        (lambda: motion("5"), "length must be a number"),
        (lambda: motion(2000, 30), "over the 1001-pixel limit"),
        (lambda: motion_path([(0, 0)]), "points must be at least two"),
        (lambda: motion_path([(0, 0), (0.5, 0)]), "length >= 1"),
        (lambda: motion_path([(0, 0), (float("nan"), 0)]), "points must be finite"),
        (lambda: motion_path([(0, 0), (1100, 0)]), "over the 1001-pixel limit"),
        (lambda: motion_path("ab"), "points must be"),
        (lambda: defocus(0), "radius must be > 0"),
        (lambda: defocus(-1), "radius must be > 0"),
        (lambda: defocus(600), "over the 1001-pixel limit"),
        (lambda: gaussian(0), "sigma must be > 0"),
        (lambda: gaussian(1, -1), "sigma2 must be > 0"),
        (lambda: gaussian(1, 1, None), "angle must be a number"),
        (lambda: gaussian(200), "over the 1001-pixel limit"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_specs_make_the_kernels():
    np.testing.assert_array_equal(parse_psf_spec("motion:15,30"), motion(15, 30))
    np.testing.assert_array_equal(parse_psf_spec(" Motion : 15 , 30 "), motion(15, 30))
    np.testing.assert_array_equal(parse_psf_spec("motion:15"), motion(15, 0))
    np.testing.assert_array_equal(parse_psf_spec("defocus:4"), defocus(4))
    np.testing.assert_array_equal(parse_psf_spec("disk:2.5"), defocus(2.5))
    np.testing.assert_array_equal(parse_psf_spec("gaussian:2"), gaussian(2))
    np.testing.assert_array_equal(parse_psf_spec("gaussian:2,1"), gaussian(2, 1))
    np.testing.assert_array_equal(parse_psf_spec("gaussian:2,1,-30.5"), gaussian(2, 1, -30.5))
    np.testing.assert_array_equal(parse_psf_spec("gaussian:1e0,.5,1E1"), gaussian(1, 0.5, 10))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("blob:3", "unknown kernel spec 'blob:3' \\(expected motion:LENGTH"),
        ("motion", "motion takes 1 to 2 numbers"),
        ("motion:", "motion takes 1 to 2 numbers \\(motion:LENGTH\\[,ANGLE\\]\\), got 0"),
        ("motion:1,2,3", "got 3"),
        ("defocus:1,2", "defocus takes one number \\(defocus:RADIUS\\), got 2"),
        ("gaussian:1,2,3,4", "gaussian takes 1 to 3 numbers"),
        ("motion:15,north", "ANGLE 'north' is not a number"),
        ("defocus:nan", "RADIUS 'nan' is not a number"),
        ("motion:15,", "ANGLE '' is not a number"),
        ("defocus:0", "kernel spec 'defocus:0': radius must be > 0"),
        ("motion:5000", "over the 1001-pixel limit"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_psf_spec(spec)
    assert "\n" not in str(error.value)


def test_load_psf_tells_specs_from_files(tmp_path):
    assert is_psf_spec("gaussian:2") and not is_psf_spec("C:/k.npy") and not is_psf_spec(3)
    np.testing.assert_array_equal(load_psf("motion:15,30"), motion(15, 30))
    odd = tmp_path / "motion:15,30.npy"  # a file named like a spec: its suffix makes it a file
    write_psf(odd, defocus(2))
    np.testing.assert_array_equal(load_psf(str(odd)), defocus(2))
    np.testing.assert_array_equal(load_psf(odd), read_psf(odd))
    with pytest.raises(FileNotFoundError):
        load_psf("motion:9,0.npy")
    with pytest.raises(ValueError, match="unknown kernel file type"):
        load_psf(str(tmp_path / "notes.md"))


def test_the_api_takes_a_spec(files):
    from pydeblur.restore import Deblurrer

    *_, weights = files
    image = np.random.default_rng(0).random((40, 48, 3)).astype(np.float32)
    deblurrer = Deblurrer(weights, "cpu")
    np.testing.assert_array_equal(deblurrer(image, "defocus:2"), deblurrer(image, defocus(2)))
    with pytest.raises(ValueError, match="kernel spec 'motion:0,0': length"):
        deblurrer(image, "motion:0,0")


# ---------------------------------------------------------------------------------------------------
# The commands


def test_deblur_and_blur_commands_take_a_spec(files, tmp_path, capsys):
    _, photos, _, weights = files
    out = tmp_path / "sharp.png"
    assert main(deblur_args([photos / "a.png"], "motion:9,30", out, weights)) == 0
    assert read_image(out)[0].shape == (96, 128, 3)
    kernel = tmp_path / "k.npy"
    write_psf(kernel, motion(9, 30))
    assert main(deblur_args([photos / "a.png"], kernel, tmp_path / "file.png", weights)) == 0
    np.testing.assert_array_equal(read_image(out)[0], read_image(tmp_path / "file.png")[0])

    blur = ["blur", str(photos / "a.png"), "--no-noise", "-o"]
    assert main([*blur, str(tmp_path / "spec.png"), "--psf", "defocus:3"]) == 0
    write_psf(kernel, defocus(3))
    assert main([*blur, str(tmp_path / "file.png"), "--psf", str(kernel)]) == 0
    np.testing.assert_array_equal(
        read_image(tmp_path / "spec.png")[0], read_image(tmp_path / "file.png")[0]
    )
    capsys.readouterr()
    assert main(deblur_args([photos / "a.png"], "motion:9,x", out, weights)) == 1
    assert "ANGLE 'x' is not a number" in capsys.readouterr().err
    assert main([*blur, str(tmp_path / "big.png"), "--psf", "defocus:60"]) == 1
    assert "larger than the image" in capsys.readouterr().err


def test_psf_command_writes_a_spec_and_its_picture(tmp_path, capsys):
    assert main(["psf", "motion:15,30", "-o", str(tmp_path / "k.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), motion(15, 30))
    assert (tmp_path / "k.png").read_bytes()[1:4] == b"PNG"
    assert "wrote" in capsys.readouterr().out
    assert main(["psf", "gaussian:2,1,45", "-o", str(tmp_path / "g.png")]) == 0  # a 16-bit kernel
    assert (tmp_path / "g-picture.png").is_file()
    np.testing.assert_allclose(read_psf(tmp_path / "g.png"), gaussian(2, 1, 45), atol=1e-4)
    for argv, message in [
        (["psf", "motion:15,30", "--seed", "3", "-o", "k.npy"], "--seed: camera-shake options"),
        (["psf", "motion:15,30", "-o", str(tmp_path / "k.jpg")], "a kernel file needs one of"),
        (["psf", "defocus:-1", "-o", str(tmp_path / "d.npy")], "radius must be > 0"),
        (["psf", "--box", "1,2,3,4", "-o", str(tmp_path)], "--box goes with --from-photo"),
        (["psf", "disk:2", "--from-photo", "p.png", "-o", "k.npy"], "not both"),
    ]:
        assert main(argv) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "d.npy").exists()


# ---------------------------------------------------------------------------------------------------
# A kernel from a point light

SHAKE = [(0, 0), (6, 2), (10, 8), (9, 14)]  # a curved streak, 19 x 15 pixels
BOX = (75, 62, 50, 50)  # around the star at column 100, row 80


def srgb(linear):
    return linear_to_srgb(np.clip(linear, 0, 1))


def add(image, kernel, row, col, light):
    kh, kw = kernel.shape
    image[row - kh // 2 : row - kh // 2 + kh, col - kw // 2 : col - kw // 2 + kw] += light * kernel


def star_field(kernel, light=3.0, seed=0):
    """Linear light: a dark sky (0.01, Gaussian noise 0.002), the star blurred by `kernel` at
    (row 80, column 100), five others (Gaussian, sigma 1.5) outside BOX."""
    image = np.full((160, 200), 0.01)
    add(image, kernel, 80, 100, light)
    for row, col in ((20, 20), (30, 170), (140, 40), (130, 180), (80, 160)):
        add(image, gaussian(1.5), row, col, 2.0)
    return np.clip(image + np.random.default_rng(seed).normal(0, 0.002, image.shape), 0, 1)


def l1(a, b):
    """L1 distance of two centred kernels of any odd sizes."""
    shape = np.maximum(a.shape, b.shape)
    pads = [np.zeros(shape), np.zeros(shape)]
    for pad, k in zip(pads, (a, b), strict=True):
        r, c = (shape[0] - k.shape[0]) // 2, (shape[1] - k.shape[1]) // 2
        pad[r : r + k.shape[0], c : c + k.shape[1]] = k
    return float(np.abs(pads[0] - pads[1]).sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_star_gives_its_kernel(seed):
    """An 8-bit sRGB colour photo: the kernel within L1 0.1 (of 2), its centre within 0.1 pixel."""
    truth = motion_path(SHAKE)
    photo = to_integer(np.repeat(srgb(star_field(truth, seed=seed))[..., None], 3, axis=2))
    kernel, info = kernel_from_point_light(photo, BOX, return_info=True)
    assert_kernel(kernel)
    assert np.abs(moments(kernel)[0]).max() < 1e-6
    assert l1(kernel, truth) < 0.1
    assert np.allclose(info["centre"], (100, 80), atol=0.1)
    assert info["noise"] == pytest.approx(0.002, rel=0.3) and info["snr"] > 100
    # read as linear light, the sRGB photo gives a distorted kernel: why decoding is the default
    assert l1(kernel_from_point_light(photo, BOX, linear=True), truth) > 0.15


def test_linear_values_and_a_star_between_pixels():
    truth = defocus(3)
    kernel = kernel_from_point_light(star_field(truth), BOX, linear=True)
    assert l1(kernel, truth) < 0.1
    # a Gaussian star centred at (column 100.4, row 79.7): re-centred within L1 0.15 (the bilinear
    # shift of a kernel sampled off-centre smooths it)
    rows, cols = np.mgrid[0:160, 0:200]
    sky = np.full((160, 200), 0.01)
    sky += (
        3 * np.exp(-((cols - 100.4) ** 2 + (rows - 79.7) ** 2) / (2 * 1.5**2)) / (2 * np.pi * 2.25)
    )
    sky += np.random.default_rng(2).normal(0, 0.002, sky.shape)
    kernel, info = kernel_from_point_light(srgb(sky), BOX, return_info=True)
    assert l1(kernel, gaussian(1.5)) < 0.15
    assert np.allclose(info["centre"], (100.4, 79.7), atol=0.1)


def test_what_is_not_an_isolated_unclipped_point_light_is_refused():
    photo = srgb(star_field(motion_path(SHAKE)))
    cases = {
        (10, 60, 40, 40): "no point light found",  # dark sky only
        (95, 62, 30, 50): "the source touches the box's 2-pixel border",  # the box cuts the star
        (75, 55, 100, 50): "more than one source \\(another near x=160, y=80\\)",
        (190, 10, 20, 20): "not inside the 200x160 image",
        (10, 10, 5, 40): "box must be 7 to 1001 pixels a side",
        (10, 10, 40.5, 40): "box must be four integers",
    }
    for box, message in cases.items():
        with pytest.raises(ValueError, match=message):
            kernel_from_point_light(photo, box)
    bright = srgb(star_field(motion_path(SHAKE), light=30.0))
    with pytest.raises(ValueError, match="the source is clipped \\(\\d+ pixels at or above 0.98"):
        kernel_from_point_light(bright, BOX)
    with pytest.raises(ValueError, match="clipped"):  # a sensor clipping lower than full scale
        kernel_from_point_light(np.minimum(photo, 0.3), BOX, saturation=0.3)
    with pytest.raises(ValueError, match="image values must be finite and in \\[0, 1\\]"):
        kernel_from_point_light(photo + 0.7, BOX)
    with pytest.raises(ValueError, match="image must be"):
        kernel_from_point_light(photo[None], BOX)


def test_psf_command_from_a_photo(tmp_path, capsys):
    truth = motion_path(SHAKE)
    photo = tmp_path / "stars.png"
    write_image(photo, srgb(star_field(truth)))
    box = ",".join(map(str, BOX))
    assert (
        main(["psf", "--from-photo", str(photo), "--box", box, "-o", str(tmp_path / "k.npy")]) == 0
    )
    assert "point light at x=100.0, y=80.0" in capsys.readouterr().out
    kernel = np.load(tmp_path / "k.npy")
    assert l1(kernel, truth) < 0.1 and (tmp_path / "k.png").is_file()
    samples = to_integer(read_image(photo)[0])  # as the command passes them
    np.testing.assert_array_equal(kernel, kernel_from_point_light(samples, BOX))
    for argv, message in [
        (["--box", "95,62,30,50"], "stars.png: box 95,62,30,50: the source touches"),
        (["--box", "1,2,3"], "--box must be X,Y,W,H (four integers)"),
        ([], "--from-photo needs --box"),
    ]:
        assert main(["psf", "--from-photo", str(photo), *argv, "-o", str(tmp_path / "x.npy")]) == 1
        assert message in capsys.readouterr().err
