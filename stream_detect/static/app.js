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
  const empty = document.getElementById("empty");
  const tiles = new Map();
  // Streams whose tile was dropped, and when: a message or a listing that left the server before the
  // stream was gone (its "stopped" status can arrive just before the DELETE's answer) must not bring it back.
  const gone = new Map();

  // The server's one-line `error`, or the status when the answer has none.
  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
      if (body && typeof body.detail === "string") return body.detail;
    } catch (error) {
      /* not JSON: fall back to the status */
    }
    return `${response.status} ${response.statusText}`.trim();
  }

  function tileFor(id) {
    let tile = tiles.get(id);
    if (tile) return tile;
    empty.hidden = true;
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.stream = id;
    node.querySelector(".name").textContent = id;
    tile = { node, labels: new Set(), detections: [], frame: null, since: performance.now() };
    const image = node.querySelector(".preview");
    image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg`);
    image.addEventListener("error", () => setTimeout(() => {
      if (tiles.get(id) !== tile) return;  // dropped meanwhile: no more requests for it
      image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg?t=${Date.now()}`);
    }, 2000));
    armRemove(id, tile, node.querySelector(".remove"));
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

  function dropTile(id) {
    gone.set(id, performance.now());
    const tile = tiles.get(id);
    if (!tile) return;
    tiles.delete(id);
    clearTimeout(tile.confirmTimer);
    const hadFocus = tile.node.contains(document.activeElement);
    tile.node.querySelector(".preview").removeAttribute("src");  // ends its MJPEG request
    tile.node.remove();
    if (!tiles.size) {
      empty.textContent = "No streams: add a camera with “Add camera”.";
      empty.hidden = false;
    }
    if (hadFocus) addOpen.focus();
  }

  // A first press asks "remove?" for 3 s; a second press within them removes the camera.
  function armRemove(id, tile, button) {
    const label = `Remove camera ${id}`;
    button.setAttribute("aria-label", label);
    const disarm = () => {
      clearTimeout(tile.confirmTimer);
      tile.confirming = false;
      button.textContent = "remove";
      button.classList.remove("confirming");
      button.setAttribute("aria-label", label);
      button.removeAttribute("aria-disabled");
    };
    button.addEventListener("click", async () => {
      if (tile.removing) return;
      if (!tile.confirming) {
        tile.confirming = true;
        button.textContent = "remove?";
        button.classList.add("confirming");
        button.setAttribute("aria-label", `Press again to remove camera ${id}`);
        tile.confirmTimer = setTimeout(disarm, 3000);
        return;
      }
      clearTimeout(tile.confirmTimer);
      tile.removing = true;
      button.textContent = "removing…";
      button.setAttribute("aria-disabled", "true");
      const problem = tile.node.querySelector(".tile-error");
      problem.hidden = true;
      try {
        const response = await fetch(`/streams/${encodeURIComponent(id)}`, { method: "DELETE", headers: authHeaders });
        if (response.ok || response.status === 404) {  // 404: someone else removed it first
          dropTile(id);
          return;
        }
        problem.textContent = await errorOf(response);
      } catch (error) {
        problem.textContent = "the server did not answer: try again";
      } finally {
        tile.removing = false;
      }
      problem.hidden = false;
      disarm();
    });
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

  // A stream's entry of GET /streams (or the POST's answer) shown on its tile.
  function showStream(s) {
    const tile = tileFor(s.id);
    setState(tile, s.state, s.detail);
    const q = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
    tile.node.querySelector(".source-fps").textContent = `${q(s.source_fps)} fps`;
    tile.node.querySelector(".processed-fps").textContent = `${q(s.processed_fps)} fps`;
    tile.node.querySelector(".latency").textContent =
      `${q(s.latency_ms.p50, 0)} / ${q(s.latency_ms.p99, 0)} ms`;
    tile.node.querySelector(".drops").textContent = `${s.frames_dropped}`;
  }

  let polling = false;
  async function refreshStreams() {
    if (polling) return;
    polling = true;
    const asked = performance.now();
    try {
      const response = await fetch("/streams", {
        headers: authHeaders, cache: "no-store", signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) return;
      const { streams } = await response.json();
      const listed = new Set(streams.map((s) => s.id));
      for (const [id, tile] of tiles) {
        // A tile made after the question was asked may be a stream this listing is too old to know.
        if (!listed.has(id) && tile.since < asked) dropTile(id);
      }
      for (const s of streams) {
        if (gone.has(s.id)) {
          if (gone.get(s.id) >= asked) continue;  // listed before it was removed
          gone.delete(s.id);  // added again since
        }
        showStream(s);
      }
    } catch (error) {
      /* the server is restarting: the next poll tries again */
    } finally {
      polling = false;
    }
  }

  const addOpen = document.getElementById("add-open");
  const addForm = document.getElementById("add-form");
  const addError = document.getElementById("add-error");
  const addSubmit = document.getElementById("add-submit");
  const addId = document.getElementById("add-id");
  const addSource = document.getElementById("add-source");

  function openAddForm() {
    addForm.hidden = false;
    addOpen.setAttribute("aria-expanded", "true");
    addId.focus();
  }

  function closeAddForm() {
    addForm.hidden = true;
    addError.hidden = true;
    addOpen.setAttribute("aria-expanded", "false");
    if (addForm.contains(document.activeElement) || document.activeElement === document.body) addOpen.focus();
  }

  async function addCamera(event) {
    event.preventDefault();  // the policy's form-action 'none': the page sends it itself
    if (addSubmit.getAttribute("aria-disabled") === "true") return;
    const id = addId.value.trim();
    const url = addSource.value.trim();
    addSubmit.setAttribute("aria-disabled", "true");
    addError.hidden = true;
    try {
      const response = await fetch("/streams", {
        method: "POST",
        headers: { ...authHeaders, "Content-Type": "application/json" },
        body: JSON.stringify({ id, url }),
      });
      if (response.status === 201) {
        const described = await response.json();
        gone.delete(described.id);
        showStream(described);
        addForm.reset();
        closeAddForm();
        return;
      }
      addError.textContent = await errorOf(response);
    } catch (error) {
      addError.textContent = "the server did not answer: try again";
    } finally {
      addSubmit.removeAttribute("aria-disabled");
    }
    addError.hidden = false;
  }

  addOpen.addEventListener("click", () => (addForm.hidden ? openAddForm() : closeAddForm()));
  document.getElementById("add-cancel").addEventListener("click", closeAddForm);
  addForm.addEventListener("submit", addCamera);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !addForm.hidden) {
      event.preventDefault();
      closeAddForm();
    }
  });

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
      if (gone.has(message.stream)) return;  // removed: a late message does not bring it back
      if (message.type === "detections") onDetections(message);
      else if (message.type === "status") {
        // A stream's last message is "stopped": it updates a tile, never makes one.
        const tile = message.state === "stopped" ? tiles.get(message.stream) : tileFor(message.stream);
        if (tile) setState(tile, message.state, message.detail);
      }
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
