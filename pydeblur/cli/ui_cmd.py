"""`pydeblur ui [PHOTO] [--port N] [--host 127.0.0.1]`: the local web page to find the kernel by eye
and deblur (docs/ui.md). Serves until Ctrl-C, then removes its temporary folder."""

import argparse
import ipaddress
import socket
import sys

from pydeblur.io import DEFAULT_MAX_PIXELS

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 512


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ui",
        help="a local web page to find the kernel by eye and deblur",
        description=(
            "Start a web server on this machine and print its address: open it in a browser to load "
            "a photo, try kernels (motion, defocus, Gaussian, a kernel file, a point light boxed on "
            "the photo) with a live preview, deblur the whole photo and download it. Ctrl-C stops it. "
            "It needs the ui extra (pip install 'pydeblur[ui]')."
        ),
    )
    parser.add_argument("photo", nargs="?", metavar="PHOTO", help="a photo to open at once")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; another address lets "
        "other machines upload to it)",
    )
    parser.add_argument(
        "--model", default="default", metavar="NAME|PATH", help="shipped model name or weights file"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse photos of more pixels (default {DEFAULT_MAX_PIXELS:,}; 0: no limit)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="MB",
        help=f"refuse uploads of more mebibytes (default {DEFAULT_MAX_UPLOAD_MB})",
    )
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1 or localhost).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_of(host: str, port: int) -> str:
    """The address to print for a server listening on host:port (IPv6 in brackets).

    >>> url_of("127.0.0.1", 8765), url_of("::1", 80)
    ('http://127.0.0.1:8765/', 'http://[::1]:80/')
    """
    host = host.strip("[]")
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port and listening (port 0: a free one), or a one-line OSError.

    >>> sock = listen("127.0.0.1", 0)
    >>> sock.getsockname()[1] > 0
    True
    >>> sock.close()
    """
    host = host.strip("[]")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OSError(f"cannot listen on {host}:{port}: {reason}; choose another --port") from None
    return sock


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    if args.max_pixels < 0:
        raise ValueError(f"--max-pixels must be >= 0 (0: no limit), got {args.max_pixels}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    try:
        import uvicorn

        from pydeblur.ui.server import LOOPBACK_NAMES, create_app
    except ImportError as error:
        raise RuntimeError(
            f"pydeblur ui needs the ui extra: pip install 'pydeblur[ui]' ({error})"
        ) from None
    loopback = is_loopback(args.host)
    hosts = [*LOOPBACK_NAMES, args.host] if loopback else None
    app = create_app(
        args.photo,
        model=args.model,
        device=args.device,
        max_pixels=args.max_pixels or None,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        allowed_hosts=hosts,
    )
    state = app.state.ui
    try:
        sock = listen(args.host, args.port)
        port = sock.getsockname()[1]
        if not loopback:
            print(
                f"pydeblur ui: listening on {args.host}, reachable from other machines: anyone who "
                "can reach it can upload files and use this machine's processors",
                file=sys.stderr,
            )
        print(f"pydeblur ui: serving {url_of(args.host, port)} (Ctrl-C stops it)", flush=True)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again: stopped cleanly
            pass
    finally:
        state.close()
    print("pydeblur ui: stopped", flush=True)
    return 0
