"""`pydeblur ui`: a local web page to find a photo's blur kernel by eye and deblur it (docs/ui.md).

The server (`pydeblur.ui.server.create_app`, Starlette run by uvicorn) keeps one photo, the kernel
settings the page sends, and a background job for the whole photo; every computation is the
library's own (`pydeblur.kernels`, `pydeblur.kernel_io`, `pydeblur.point_light`,
`pydeblur.baselines.wiener`, `pydeblur.restore.Deblurrer`). The modules, one job each:

- `settings`: what the page sends (kernel, noise, strength) checked, and the equivalent command line;
- `workspace`: the private temporary folder that uploads and results live in;
- `preview`: the crop around a point, its fast Wiener preview and the network's, as PNG data URLs;
- `jobs`: the whole photo deblurred in a background thread, with its progress;
- `server`: the HTTP API and the page (`static/`: plain HTML, CSS and JavaScript, no build step).

Importing this package needs no web framework; `server` needs the `ui` extra (Starlette, uvicorn).
"""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
