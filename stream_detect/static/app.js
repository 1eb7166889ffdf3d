"use strict";
// stream-detect dashboard: tiles per stream, live MJPEG, detections over the websocket.
(() => {
  const params = new URLSearchParams(location.search);
  let token = params.get("token") || sessionStorage.getItem("stream-detect-token") || "";
  if (params.has("token")) {
    sessionStorage.setItem("stream-detect-token", token);
    params.delete("token");  // keep the token out of the address bar and of bookmarks
    history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : ""));
  }
  const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};
  const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url);

  // The same palette and hash (FNV-1a over UTF-8) as the server's renderer.
  const PALETTE = [[255, 56, 56], [255, 157, 151], [255, 112, 31], [255, 178, 29], [207, 210, 49],
    [72, 249, 10], [146, 204, 23], [61, 219, 134], [26, 147, 52], [0, 212, 187], [44, 153, 168],
    [0, 194, 255], [52, 69, 147], [100, 115, 255], [0, 24, 236], [132, 56, 255], [82, 0, 133],
    [203, 56, 255], [255, 149, 200], [255, 55, 199]];
  function labelColour(label) {
    let hash = 0x811c9dc5;
    for (const byte of new TextEncoder().encode(label)) {
      hash ^= byte;
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    const [r, g, b] = PALETTE[hash % PALETTE.length];
    return `rgb(${r}, ${g}, ${b})`;
  }

  const grid = document.getElementById("grid");
  const template = document.getElementById("tile");
  const tiles = new Map();

  function tileFor(id) {
    let tile = tiles.get(id);
    if (tile) return tile;
    document.getElementById("empty")?.remove();
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.stream = id;
    node.querySelector(".name").textContent = id;
    const image = node.querySelector(".preview");
    image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg`);
    image.addEventListener("error", () => setTimeout(() => {
      image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg?t=${Date.now()}`);
    }, 2000));
    tile = { node, labels: new Set(), detections: [], frame: null };
    const slider = node.querySelector(".score-filter");
    slider.addEventListener("input", () => {
      node.querySelector(".score-value").textContent = Number(slider.value).toFixed(2);
      renderDetections(tile);
    });
    node.querySelector(".label-filter").addEventListener("change", () => renderDetections(tile));
    tiles.set(id, tile);
    grid.appendChild(node);
    return tile;
  }

  function setState(tile, state, detail) {
    const pill = tile.node.querySelector(".state");
    pill.textContent = state;
    pill.className = `pill state pill-${state}`;
    pill.title = detail || "";
  }

  function renderDetections(tile) {
    const list = tile.node.querySelector(".detections");
    const wanted = tile.node.querySelector(".label-filter").value;
    const minimum = Number(tile.node.querySelector(".score-filter").value);
    const shown = tile.detections
      .filter((d) => (!wanted || d.label === wanted) && d.score >= minimum)
      .sort((a, b) => b.score - a.score);
    list.replaceChildren(...shown.map((d) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = labelColour(d.label);
      name.append(swatch, `${d.label} ${d.score.toFixed(2)}`);
      const box = document.createElement("span");
      box.className = "box";
      box.textContent = `${d.box.xmin},${d.box.ymin} → ${d.box.xmax},${d.box.ymax}`;
      item.append(name, box);
      return item;
    }));
    if (!shown.length) {
      const item = document.createElement("li");
      item.className = "none";
      item.textContent = tile.detections.length ? "nothing above the filter" : "no detections";
      list.append(item);
    }
  }

  function onDetections(message) {
    const tile = tileFor(message.stream);
    tile.detections = message.detections;
    tile.frame = message.frame;
    document.getElementById("model").textContent = `model: ${message.model}`;
    const select = tile.node.querySelector(".label-filter");
    for (const d of message.detections) {
      if (!tile.labels.has(d.label)) {
        tile.labels.add(d.label);
        select.append(new Option(d.label, d.label));
      }
    }
    tile.node.querySelector(".overlay-note").textContent = `frame ${message.frame}`;
    renderDetections(tile);
  }

  async function refreshStreams() {
    try {
      const response = await fetch("/streams", { headers: authHeaders, cache: "no-store" });
      if (!response.ok) return;
      const { streams } = await response.json();
      for (const s of streams) {
        const tile = tileFor(s.id);
        setState(tile, s.state, s.detail);
        const q = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
        tile.node.querySelector(".source-fps").textContent = `${q(s.source_fps)} fps`;
        tile.node.querySelector(".processed-fps").textContent = `${q(s.processed_fps)} fps`;
        tile.node.querySelector(".latency").textContent =
          `${q(s.latency_ms.p50, 0)} / ${q(s.latency_ms.p99, 0)} ms`;
        tile.node.querySelector(".drops").textContent = `${s.frames_dropped}`;
      }
    } catch (error) {
      /* the server is restarting: the next poll tries again */
    }
  }

  let backoff = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const protocols = token ? ["stream-detect.v1", `bearer.${token}`] : ["stream-detect.v1"];
    const socket = new WebSocket(`${scheme}://${location.host}/ws`, protocols);
    const status = document.getElementById("connection");
    socket.addEventListener("open", () => {
      backoff = 500;
      status.textContent = "live";
      status.className = "pill pill-on";
      document.querySelector(".dot").style.background = "var(--ok)";
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "detections") onDetections(message);
      else if (message.type === "status") setState(tileFor(message.stream), message.state, message.detail);
    });
    socket.addEventListener("close", () => {
      status.textContent = "reconnecting";
      status.className = "pill pill-off";
      document.querySelector(".dot").style.background = "var(--bad)";
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 8000);
    });
  }

  function tick() {
    document.getElementById("clock").textContent = new Date().toLocaleTimeString();
  }

  refreshStreams();
  setInterval(refreshStreams, 1500);
  setInterval(tick, 1000);
  tick();
  connect();
})();
