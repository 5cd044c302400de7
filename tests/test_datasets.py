"""Photo split, on-the-fly blurred crops, the materialised test set and the loader."""

import numpy as np
import pytest
import torch

from pydeblur.datasets import (
    LUMA,
    BlurredCrops,
    EpochSampler,
    detail,
    list_photos,
    load_test_set,
    make_loader,
    read_manifest,
    save_test_set,
    split_photos,
    write_manifest,
)
from pydeblur.io import write_image
from tests.helpers import needs_data

CROP, PSF = 48, 15


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Ten small 8-bit photos (smooth random colours) in a folder, with a non-image file."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(10):
        coarse = rng.random((9, 8, 3)).astype(np.float32)
        image = np.kron(coarse, np.ones((10, 10, 1), np.float32))  # 90x80 blocks: edges to blur
        write_image(folder / f"photo{i:02d}.png", image)
    (folder / "SOURCES.md").write_text("not a photo\n")
    return folder


def make_crops(paths, **kwargs):
    options = {"crops_per_photo": 2, "crop_size": CROP, "psf_size": PSF, "seed": 3}
    return BlurredCrops(paths, **{**options, **kwargs})


def test_split_is_by_photo_disjoint_complete_and_seeded(photos):
    split = split_photos(photos, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [8, 1, 1]
    everything = sum(split.values(), [])
    assert sorted(everything) == list_photos(photos) and len(set(everything)) == 10
    assert split == split_photos(photos, seed=0)
    assert any(split_photos(photos, seed=s) != split for s in range(1, 5))
    with pytest.raises(ValueError, match="fractions"):
        split_photos(photos, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(FileNotFoundError, match="no such photo folder"):
        split_photos(photos / "missing")


def test_split_of_the_shared_photos():
    split = split_photos(needs_data("photos"))
    assert [len(split[k]) for k in ("train", "val", "test")] == [31, 4, 4]
    assert not set(split["train"]) & set(split["test"])
    assert not set(split["val"]) & (set(split["test"]) | set(split["train"]))


def test_manifest_round_trip(photos, tmp_path):
    split = split_photos(photos)
    write_manifest(split, tmp_path / "sub" / "split.json")
    assert read_manifest(tmp_path / "sub" / "split.json") == split
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        read_manifest(tmp_path / "none.json")


def test_items_shapes_and_order(photos):
    data = make_crops(list_photos(photos)[:3])
    assert len(data) == 3 * 2 * 4 and data.n_crops == 6
    item = data[5]
    assert item["sharp"].shape == item["blurred"].shape == (3, CROP, CROP)
    assert item["sharp"].dtype == item["blurred"].dtype == item["psf"].dtype == torch.float32
    assert item["psf"].shape == (1, PSF, PSF)
    assert float(item["psf"].sum()) == pytest.approx(1, abs=1e-5) and item["psf"].min() >= 0
    assert [data[i]["exposure"] for i in range(4)] == [1 / 8, 1 / 4, 1 / 2, 1]
    assert item["photons"] == 2048 and item["gauss"] == 0.05
    with pytest.raises(IndexError):
        data[len(data)]


def test_one_trajectory_per_crop_shared_by_its_exposures(photos):
    data = make_crops(list_photos(photos)[:2], augment=True)
    items = [data[i] for i in range(4, 8)]  # crop 1
    for item in items[1:]:
        torch.testing.assert_close(item["sharp"], items[0]["sharp"], rtol=0, atol=0)
    supports = [item["psf"][0] > 0 for item in items]
    for shorter, longer in zip(supports, supports[1:], strict=False):
        assert bool((longer | ~shorter).all())  # each PSF's support holds the previous one's
    assert not torch.equal(data[0]["psf"], items[0]["psf"])  # another crop, another trajectory


def test_items_are_deterministic_whatever_the_order_and_instance(photos):
    paths = list_photos(photos)[:3]
    first = make_crops(paths, augment=True, photons=(100, 4000), gauss=(0, 2))
    reference = [first[i] for i in (17, 3, 9)]
    second = make_crops(paths, augment=True, photons=(100, 4000), gauss=(0, 2))
    for _ in range(2):
        for i, item in zip((17, 3, 9), reference, strict=True):
            again = second[i]
            for key in ("sharp", "blurred", "psf"):
                torch.testing.assert_close(again[key], item[key], rtol=0, atol=0)
            assert (again["photons"], again["gauss"]) == (item["photons"], item["gauss"])
    other_seed = make_crops(paths, augment=True, seed=4)[3]
    assert not torch.equal(other_seed["blurred"], reference[1]["blurred"])


def test_noise_ranges(photos):
    data = make_crops(list_photos(photos)[:2], photons=(100, 4000), gauss=(0.0, 2.0))
    levels = [(data[i]["photons"], data[i]["gauss"]) for i in range(len(data))]
    assert all(100 <= p <= 4000 and 0 <= g <= 2 for p, g in levels)
    assert len(set(levels)) == len(levels)
    with pytest.raises(ValueError, match="photons"):
        make_crops(list_photos(photos)[:2], photons=(10, 1))
    with pytest.raises(ValueError, match="gauss"):
        make_crops(list_photos(photos)[:2], gauss=-1.0)


@pytest.mark.parametrize("augment", [False, True])
def test_blurred_is_the_sharp_crop_convolved_with_the_psf(photos, augment):
    """Noise-free items: inside the crop, away from its border by the PSF size, blurred equals the
    convolution (centre element kh // 2) of sharp with psf, whatever the augmentation."""
    data = make_crops(list_photos(photos)[:4], augment=augment, photons=1e12, gauss=0.0)
    r = PSF // 2
    for i in range(0, len(data), 3):
        item = data[i]
        sharp, psf = item["sharp"].double()[:, None], item["psf"].double()
        # true convolution = correlation with the flipped kernel; "same" alignment at the centre element
        same = torch.nn.functional.conv2d(sharp, psf.flip(-2, -1)[None], padding=r)[:, 0]
        inside = (slice(None), slice(PSF, CROP - PSF), slice(PSF, CROP - PSF))
        torch.testing.assert_close(
            item["blurred"].double()[inside], same[inside], atol=2e-5, rtol=0
        )


def test_grey_and_correlated_noise_items(photos):
    """grey items: the luma in all three channels, with one noise shared by them; correlated items:
    colour, noise correlated across channels with about the per-channel variance of independent noise;
    the rest as without the options, item for item."""
    paths = list_photos(photos)[:4]
    plain = make_crops(paths, photons=400.0)
    clean = make_crops(paths, photons=1e12, gauss=0.0)
    mixed = make_crops(paths, photons=400.0, grey=0.4, correlated=0.4)
    kinds = {"grey": 0, "correlated": 0, "independent": 0}
    for i in range(len(mixed)):
        item, before = mixed[i], plain[i]
        grey, correlation = mixed._channel_noise(i // 4, i % 4)
        if grey:
            kinds["grey"] += 1
            luma = sum(w * before["sharp"][c] for c, w in enumerate(LUMA))
            for channel in range(3):
                torch.testing.assert_close(item["sharp"][channel], luma, atol=1e-6, rtol=0)
                assert torch.equal(item["blurred"][channel], item["blurred"][0])
        elif correlation:
            kinds["correlated"] += 1
            assert torch.equal(item["sharp"], before["sharp"])
            blur = clean[i]["blurred"]
            noise, independent = item["blurred"] - blur, before["blurred"] - blur
            r = torch.corrcoef(noise[:, PSF:-PSF, PSF:-PSF].flatten(1))[0, 1]
            assert abs(float(r) - correlation) < 0.1
            assert 0.85 < float(noise.var() / independent.var()) < 1.15
        else:
            kinds["independent"] += 1
            assert torch.equal(item["blurred"], before["blurred"])
    assert min(kinds.values()) > 0, kinds
    with pytest.raises(ValueError, match="grey and correlated"):
        make_crops(paths, grey=0.7, correlated=0.5)


def test_crop_candidates_pick_the_most_detailed_position(photos):
    """Each crop is the most detailed of the candidates, the first of which is the plain crop: never
    less detailed than without candidates, more detailed on average, the PSF and noise levels kept."""
    paths = list_photos(photos)[:4]
    plain, picky = (
        make_crops(paths, crops_per_photo=4),
        make_crops(paths, crops_per_photo=4, crop_candidates=6),
    )
    plain_detail, picky_detail = [], []
    for i in range(0, len(plain), 4):
        before, after = plain[i], picky[i]
        assert torch.equal(before["psf"], after["psf"]) and before["photons"] == after["photons"]
        plain_detail.append(detail(before["sharp"].permute(1, 2, 0).numpy()))
        picky_detail.append(detail(after["sharp"].permute(1, 2, 0).numpy()))
        assert picky_detail[-1] >= plain_detail[-1] - 1e-6
    assert np.mean(picky_detail) > np.mean(plain_detail)
    assert torch.equal(
        make_crops(paths, crop_candidates=1)[5]["blurred"], make_crops(paths)[5]["blurred"]
    )
    with pytest.raises(ValueError, match="crop_candidates"):
        make_crops(paths, crop_candidates=0)


def test_augmentation_changes_the_crops(photos):
    paths = list_photos(photos)[:2]
    plain, augmented = make_crops(paths), make_crops(paths, augment=True)
    changed = [not torch.equal(plain[i]["sharp"], augmented[i]["sharp"]) for i in range(0, 16, 4)]
    assert any(changed)


def test_photo_too_small_is_a_clear_error(photos):
    data = make_crops(list_photos(photos)[:1], crop_size=80)
    with pytest.raises(ValueError, match="smaller than a 80 crop"):
        data[0]


def test_test_set_round_trip_is_exact(photos, tmp_path):
    data = make_crops(list_photos(photos)[:2], crops_per_photo=1)
    save_test_set(data, tmp_path / "test.safetensors")
    loaded = load_test_set(tmp_path / "test.safetensors")
    assert len(loaded) == len(data) == 8
    assert loaded.tensors["sharp"].dtype == torch.uint8 and loaded.tensors["sharp"].shape[0] == 2
    for i in range(len(data)):
        a, b = data[i], loaded[i]
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
            else:
                assert b[key] == a[key]


def test_loader_batches_and_worker_count_independence(photos):
    data = make_crops(list_photos(photos)[:2])
    batches0 = list(make_loader(data, batch_size=3, shuffle=True, workers=0, seed=7))
    batches2 = list(make_loader(data, batch_size=3, shuffle=True, workers=2, seed=7))
    assert batches0[0]["blurred"].shape == (3, 3, CROP, CROP)
    assert batches0[0]["psf"].shape == (3, 1, PSF, PSF)
    assert batches0[0]["exposure"].dtype == torch.float64
    assert len(batches0) == len(batches2) == 6
    for a, b in zip(batches0, batches2, strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_distributed_loader_uses_a_distributed_sampler(photos, tmp_path):
    import torch.distributed as dist

    data = make_crops(list_photos(photos)[:2])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        loader = make_loader(data, batch_size=4, shuffle=True, workers=0, seed=1, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        assert sum(len(b["sharp"]) for b in loader) == len(data)
    finally:
        dist.destroy_process_group()


def test_photo_listing_takes_the_image_suffixes_and_skips_hidden_files(tmp_path):
    image = np.zeros((4, 4, 3), np.float32)
    for name in ("b.jpg", "a.PNG", "c.tif", ".hidden.jpg"):
        write_image(tmp_path / name, image)
    for name in ("d.bmp", "e.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"not listed")
    (tmp_path / "folder.jpg").mkdir()
    assert [p.rsplit("/", 1)[1] for p in list_photos(tmp_path)] == ["a.PNG", "b.jpg", "c.tif"]
    with pytest.raises(ValueError, match=r"no photos \(\.png, \.jpg"):
        list_photos(tmp_path / "folder.jpg")


def test_epoch_sampler_takes_consecutive_windows_split_between_ranks():
    epochs = []
    for epoch in range(3):
        ranks = [EpochSampler(10, 4, seed=5, rank=r, world=2) for r in range(2)]
        for sampler in ranks:
            sampler.set_epoch(epoch)
        assert [len(s) for s in ranks] == [2, 2]
        epochs.append([list(s) for s in ranks])
    windows = [sorted(r0 + r1) for r0, r1 in epochs]
    assert windows == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 8, 9]]  # the dataset wraps
    again = EpochSampler(10, 4, seed=5, rank=1, world=2)
    again.set_epoch(2)
    assert list(again) == epochs[2][1]  # a pure function of (seed, epoch, rank)
    with pytest.raises(ValueError, match="multiple of the world size"):
        EpochSampler(10, 5, seed=0, world=2)


def test_loader_with_its_own_sampler(photos):
    data = make_crops(list_photos(photos)[:2])
    sampler = EpochSampler(len(data), 6, seed=0)
    loader = make_loader(data, 3, workers=0, sampler=sampler, drop_last=True, pin_memory=False)
    assert loader.sampler is sampler and loader.generator is None and not loader.pin_memory
    assert [len(batch["sharp"]) for batch in loader] == [3, 3]
    with pytest.raises(ValueError, match="own sampler"):
        make_loader(data, 3, shuffle=True, sampler=sampler)
