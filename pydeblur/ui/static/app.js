// pydeblur ui: the page's behaviour. Plain JavaScript, no libraries; it talks only to its own server
// (docs/ui.md lists the endpoints). Every change of a setting asks for the kernel's picture and the
// command line, then a Wiener preview of the crop (at once), then the network's (when the model is
// free; a newer change supersedes it).
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  status: null, // the server's /api/status
  photo: null, // the photo's status (name, width, height, ...)
  view: null, // the overview's Image
  centre: null, // the preview crop's centre, photo pixels
  box: null, // the point-light box being drawn, photo pixels
  generation: 0, // bumped by every change; stale answers are dropped
  timer: null,
  netAbort: null,
  job: null,
};

// -- talking to the server -------------------------------------------------------------------------

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("the server does not answer (was it stopped?)");
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
    error.body = body || {};
    error.status = response.status;
    throw error;
  }
  return body;
}

function postJSON(path, data, signal) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
    signal,
  });
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

function clearMessage() {
  showMessage("");
}

// -- the settings --------------------------------------------------------------------------------

function kernelSettings() {
  const kind = $("kernel-kind").value;
  const number = (id) => Number($(id).value);
  if (kind === "motion") return { kind, length: number("motion-length"), angle: number("motion-angle") };
  if (kind === "defocus") return { kind, radius: number("defocus-radius") };
  if (kind === "gaussian") {
    return {
      kind,
      sigma: number("gaussian-sigma"),
      sigma2: number("gaussian-sigma2"),
      angle: number("gaussian-angle"),
    };
  }
  return { kind };
}

function settings() {
  return {
    kernel: kernelSettings(),
    noise: $("noise-auto").checked ? "auto" : $("noise-value").value,
    strength: Number($("strength").value),
  };
}

function showKind() {
  const kind = $("kernel-kind").value;
  for (const panel of document.querySelectorAll(".kind")) panel.hidden = panel.dataset.kind !== kind;
  drawOverview();
}

// -- the photo -------------------------------------------------------------------------------------

async function uploadPhoto(file) {
  clearMessage();
  $("photo-info").textContent = `Opening ${file.name}…`;
  try {
    const photo = await api(`/api/photo?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
    });
    await photoOpened(photo);
  } catch (error) {
    showMessage(error.message);
    $("photo-info").textContent = state.photo ? describePhoto(state.photo) : "No photo.";
  }
}

function describePhoto(photo) {
  return `${photo.name}: ${photo.width}×${photo.height}, ${photo.bits}-bit`;
}

async function photoOpened(photo) {
  state.photo = photo;
  state.centre = [photo.width / 2, photo.height / 2];
  state.box = null;
  $("point-info").textContent = "";
  $("photo-info").textContent = describePhoto(photo);
  $("noise-estimate").textContent = `(${photo.noise_estimate.toFixed(4)})`;
  if ($("noise-auto").checked) $("noise-value").value = photo.noise_estimate.toFixed(4);
  $("deblur-button").disabled = false;
  $("downloads").hidden = true;
  $("progress").value = 0;
  $("job-info").textContent = "";
  const image = new Image();
  await new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("the photo's overview did not load"));
    image.src = `/api/photo/view?ts=${Date.now()}`;
  });
  state.view = image;
  $("drop-hint").hidden = true;
  drawOverview();
  changed();
}

function overviewScale() {
  // overview canvas pixels per photo pixel
  return $("overview").width / state.photo.width;
}

function drawOverview() {
  const canvas = $("overview");
  const context = canvas.getContext("2d");
  if (!state.view || !state.photo) return;
  const room = Math.max(320, canvas.parentElement.clientWidth - 2);
  const scale = Math.min(2, room / state.photo.width, 380 / state.photo.height);
  canvas.width = Math.max(1, Math.round(state.photo.width * scale));
  canvas.height = Math.max(1, Math.round(state.photo.height * scale));
  context.drawImage(state.view, 0, 0, canvas.width, canvas.height);
  const s = overviewScale();
  const size = Number($("preview-size").value);
  const w = Math.min(size, state.photo.width);
  const h = Math.min(size, state.photo.height);
  const x = Math.min(Math.max(state.centre[0] - w / 2, 0), state.photo.width - w);
  const y = Math.min(Math.max(state.centre[1] - h / 2, 0), state.photo.height - h);
  context.lineWidth = 2;
  context.strokeStyle = "#1f6feb";
  context.strokeRect(x * s, y * s, w * s, h * s);
  if (state.box) {
    const [bx, by, bw, bh] = state.box;
    context.strokeStyle = "#f5a623";
    context.setLineDash([4, 3]);
    context.strokeRect(bx * s, by * s, bw * s, bh * s);
    context.setLineDash([]);
  }
}

function photoPoint(event) {
  const canvas = $("overview");
  const rect = canvas.getBoundingClientRect();
  const s = overviewScale() * (rect.width / canvas.width);
  return [(event.clientX - rect.left) / s, (event.clientY - rect.top) / s];
}

function setupOverview() {
  const canvas = $("overview");
  let start = null;
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.photo) return;
    start = photoPoint(event);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!start || $("kernel-kind").value !== "point") return;
    const [x, y] = photoPoint(event);
    state.box = boxOf(start, [x, y]);
    drawOverview();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!start) return;
    const end = photoPoint(event);
    const from = start;
    start = null;
    if ($("kernel-kind").value === "point" && Math.hypot(end[0] - from[0], end[1] - from[1]) > 3) {
      state.box = boxOf(from, end);
      drawOverview();
      measurePointLight(state.box);
    } else {
      state.centre = end;
      drawOverview();
      changed();
    }
  });
}

function boxOf(a, b) {
  const x = Math.max(0, Math.round(Math.min(a[0], b[0])));
  const y = Math.max(0, Math.round(Math.min(a[1], b[1])));
  const w = Math.min(state.photo.width - x, Math.round(Math.abs(b[0] - a[0])));
  const h = Math.min(state.photo.height - y, Math.round(Math.abs(b[1] - a[1])));
  return [x, y, Math.max(w, 1), Math.max(h, 1)];
}

async function measurePointLight(box) {
  clearMessage();
  $("point-info").textContent = "Measuring…";
  try {
    const info = await postJSON("/api/point-light", { box });
    $("point-info").textContent =
      `Box ${info.box.join(",")}: a ${info.shape[0]}×${info.shape[1]} kernel, signal-to-noise ${info.snr}`;
    changed();
  } catch (error) {
    $("point-info").textContent = "";
    showMessage(error.message);
  }
}

async function uploadKernel(file) {
  clearMessage();
  try {
    const info = await api(`/api/kernel-file?name=${encodeURIComponent(file.name)}`, {
      method: "POST",
      body: file,
    });
    $("kernel-file-info").textContent = `${info.name}: ${info.shape[0]}×${info.shape[1]}`;
    changed();
  } catch (error) {
    showMessage(error.message);
  }
}

// -- the preview -----------------------------------------------------------------------------------

function changed() {
  state.generation += 1;
  document.body.dataset.generation = String(state.generation); // read by the browser test
  clearTimeout(state.timer);
  state.timer = setTimeout(() => refresh(state.generation), 80);
}

function drawData(canvas, url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => {
      canvas.width = image.width;
      canvas.height = image.height;
      canvas.getContext("2d").drawImage(image, 0, 0);
      resolve();
    };
    image.onerror = () => reject(new Error("a preview picture did not load"));
    image.src = url;
  });
}

function setStage(stage, generation) {
  const canvas = $("restored-view");
  canvas.dataset.stage = stage; // "wiener" or "network": read by the browser test
  canvas.dataset.generation = String(generation);
}

async function refresh(generation) {
  const current = () => generation === state.generation;
  const request = settings();
  let kernelShown = false;
  try {
    const kernel = await postJSON("/api/kernel", request);
    if (!current()) return;
    kernelShown = true;
    $("kernel-picture").src = kernel.picture;
    $("kernel-size").textContent = `${kernel.shape[0]}×${kernel.shape[1]} px`;
    $("command").textContent = kernel.command;
    if (!state.photo) return;
    clearMessage();
    const crop = { ...request, centre: state.centre, size: Number($("preview-size").value) };
    const wiener = await postJSON("/api/preview", { ...crop, engine: "wiener" });
    if (!current()) return;
    await drawData($("blurred-view"), wiener.blurred);
    await drawData($("restored-view"), wiener.image);
    setStage("wiener", generation);
    $("restored-caption").textContent = "Wiener filter (fast preview)";
    $("preview-info").textContent =
      `Crop ${wiener.window.join(",")} (x, y, w, h), noise sigma ${wiener.noise_sigma}: Wiener in ` +
      `${wiener.seconds} s; the network's result follows…`;
    layoutCompare();
    if (state.netAbort) state.netAbort.abort();
    state.netAbort = new AbortController();
    const network = await postJSON("/api/preview", { ...crop, engine: "network" }, state.netAbort.signal);
    if (!current()) return;
    await drawData($("restored-view"), network.image);
    setStage("network", generation);
    $("restored-caption").textContent = "pydeblur network";
    $("preview-info").textContent =
      `Crop ${network.window.join(",")} (x, y, w, h), noise sigma ${network.noise_sigma}: Wiener in ` +
      `${wiener.seconds} s, the network (${network.precision}) in ${network.seconds} s.`;
  } catch (error) {
    if (error.name === "AbortError" || !current()) return;
    if (error.body && error.body.superseded) return;
    if (!kernelShown) {
      // no kernel for these settings: show none rather than the last one
      $("kernel-picture").removeAttribute("src");
      $("kernel-size").textContent = "";
      $("command").textContent = "";
    }
    if (error.body && error.body.busy) {
      $("preview-info").textContent = `${error.message}.`;
      return;
    }
    const hint = /^no (kernel file|point light) yet/.test(error.message);
    showMessage(error.message, hint ? "info" : "error");
  }
}

function layoutCompare() {
  const compare = $("compare");
  const mode = document.querySelector('input[name="view"]:checked').value;
  compare.className = mode;
  const top = $("blurred-pane");
  if (mode === "swipe") {
    const keep = 100 - Number($("swipe").value);
    top.style.clipPath = `inset(0 ${keep}% 0 0)`;
  } else {
    top.style.clipPath = "";
  }
}

// -- the whole photo -------------------------------------------------------------------------------

async function deblurWhole() {
  clearMessage();
  $("downloads").hidden = true;
  $("deblur-button").disabled = true;
  try {
    const job = await postJSON("/api/deblur", settings());
    state.job = job.id;
    await followJob(job.id);
  } catch (error) {
    showMessage(error.message);
  } finally {
    $("deblur-button").disabled = !state.photo;
  }
}

async function followJob(id) {
  for (;;) {
    const job = await api(`/api/jobs/${id}`);
    $("progress").value = job.progress;
    $("job-info").textContent = job.message;
    if (job.state === "done") {
      $("download-png").href = `/api/jobs/${id}/result.png`;
      $("download-tiff").href = `/api/jobs/${id}/result.tiff`;
      $("downloads").hidden = false;
      changed(); // the network preview waited for the job
      return;
    }
    if (job.state === "failed") throw new Error(job.message);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

// -- wiring ----------------------------------------------------------------------------------------

function setupDrop() {
  const wrap = document.body;
  const zone = $("overview-wrap");
  wrap.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  wrap.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  wrap.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) uploadPhoto(file);
  });
}

function setupOutputs() {
  for (const output of document.querySelectorAll("output[id$='-out']")) {
    const input = $(output.id.slice(0, -4));
    const show = () => (output.textContent = input.value);
    input.addEventListener("input", show);
    show();
  }
}

async function start() {
  setupOutputs();
  setupOverview();
  setupDrop();
  $("photo-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadPhoto(file);
    event.target.value = "";
  });
  $("kernel-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) uploadKernel(file);
    event.target.value = "";
  });
  $("kernel-kind").addEventListener("change", () => {
    showKind();
    changed();
  });
  for (const input of document.querySelectorAll("#controls input[type=range], #noise-value")) {
    input.addEventListener("input", changed);
  }
  $("noise-auto").addEventListener("change", () => {
    $("noise-value").disabled = $("noise-auto").checked;
    changed();
  });
  $("preview-size").addEventListener("change", () => {
    drawOverview();
    changed();
  });
  for (const radio of document.querySelectorAll('input[name="view"]')) {
    radio.addEventListener("change", layoutCompare);
  }
  $("swipe").addEventListener("input", layoutCompare);
  $("deblur-button").addEventListener("click", deblurWhole);
  $("copy-command").addEventListener("click", () => {
    navigator.clipboard?.writeText($("command").textContent);
  });
  window.addEventListener("resize", drawOverview);
  try {
    const status = await api("/api/status");
    state.status = status;
    for (const size of status.preview_sizes) {
      const option = new Option(String(size), String(size), false, size === status.preview_size);
      $("preview-size").add(option);
    }
    if (status.kernel_file) {
      $("kernel-file-info").textContent =
        `${status.kernel_file.name}: ${status.kernel_file.shape.join("×")}`;
    }
    if (status.photo) await photoOpened(status.photo);
    else changed();
  } catch (error) {
    showMessage(error.message);
  }
  layoutCompare();
}

document.addEventListener("DOMContentLoaded", start);
