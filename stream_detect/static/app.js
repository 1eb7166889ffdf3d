"use strict";
// stream-detect dashboard: tiles per stream, live MJPEG, detections over the websocket; on tracked
// streams also live counts (with each zone's and line's name and count placed over the video) and events.
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

  const EVENT_ROWS = 50;  // rows of a tile's event list, and the page asked of /events
  const EVENTS_KEPT = 300;  // events a tile remembers (what its filters choose from), beyond its rows
  const KINDS = new Set(["object.start", "object.end", "zone.enter", "zone.leave", "zone.loiter", "line.cross"]);

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
    tile = {
      id, node, labels: new Set(), detections: [], frame: null, since: performance.now(),
      size: null,  // the stream's width and height, for zones and lines given in px
      zones: [], lines: [], geometry: "", counts: null,
      countsAt: -Infinity,  // when the last counts message arrived: older listings do not overwrite it
      tracking: false, events: new Map(), eventsAsked: false, historyOff: false, laidOut: "",
      rows: new Map(),  // event id -> its row (kept while the event is: its thumbnail loads once)
      media: false,  // the history answered: its events' snapshots and clips may be asked for
    };
    const image = node.querySelector(".preview");
    image.addEventListener("load", () => layoutOverlay(tile));
    tile.view = "mjpeg";
    tile.player = null;  // the H.264 player, once the stream has HLS and the browser plays it
    image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg`);
    image.addEventListener("error", () => setTimeout(() => {
      if (tiles.get(id) !== tile || tile.view === "h264") return;  // dropped, or playing H.264: no more MJPEG
      image.src = withToken(`/streams/${encodeURIComponent(id)}/mjpeg?t=${Date.now()}`);
    }, 2000));
    armRemove(id, tile, node.querySelector(".remove"));
    const slider = node.querySelector(".score-filter");
    slider.addEventListener("input", () => {
      node.querySelector(".score-value").textContent = Number(slider.value).toFixed(2);
      renderDetections(tile);
    });
    node.querySelector(".label-filter").addEventListener("change", () => renderDetections(tile));
    const toggle = node.querySelector(".overlay-toggle");
    toggle.addEventListener("change", () => { node.querySelector(".overlay-layer").hidden = !toggle.checked; });
    for (const filter of node.querySelectorAll(".kind-filter, .event-label-filter")) {
      filter.addEventListener("change", () => {
        renderEvents(tile);
        if (tile.tracking) loadEvents(tile);
      });
    }
    tile.resize = new ResizeObserver(() => layoutOverlay(tile));
    tile.resize.observe(node.querySelector(".video"));
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
    tile.resize.disconnect();
    stopH264(tile);
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
      if (Number.isInteger(d.track_id)) {
        const track = document.createElement("span");
        track.className = "track";
        track.textContent = `#${d.track_id}`;
        track.title = "track id";
        name.append(" ", track);
      }
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

  // A label seen on a stream (in a detection or an event) becomes a choice of both its label filters.
  function noteLabel(tile, label) {
    if (typeof label !== "string" || tile.labels.has(label)) return;
    tile.labels.add(label);
    tile.node.querySelector(".label-filter").append(new Option(label, label));
    tile.node.querySelector(".event-label-filter").append(new Option(label, label));
  }

  function onDetections(message) {
    const tile = tileFor(message.stream);
    tile.detections = message.detections;
    tile.frame = message.frame;
    document.getElementById("model").textContent = `model: ${message.model}`;
    for (const d of message.detections) noteLabel(tile, d.label);
    tile.node.querySelector(".overlay-note").textContent = `frame ${message.frame}`;
    setSize(tile, message.width, message.height);
    renderDetections(tile);
  }

  // ---- zones and lines: live counts, and each one's name and count over the video

  function setSize(tile, width, height) {
    if (!(width > 0 && height > 0)) return;
    const changed = !tile.size || tile.size.width !== width || tile.size.height !== height;
    tile.size = { width, height };
    if (changed) renderOverlay(tile);  // px zones and lines move with the stream's size
    else layoutOverlay(tile);  // the preview's first frame may have just given the picture its size
  }

  // The zones and lines as configured (from GET /streams): rebuilt only when they change.
  function setGeometry(tile, zones, lines) {
    const geometry = JSON.stringify([zones, lines]);
    if (geometry === tile.geometry) return;
    tile.geometry = geometry;
    tile.zones = zones;
    tile.lines = lines;
    renderCounts(tile);
  }

  function setCounts(tile, counts) {
    const next = { zones: counts.zones || {}, lines: counts.lines || {} };
    if (JSON.stringify(next) === JSON.stringify(tile.counts)) return;  // a poll that brings nothing new
    tile.counts = next;
    renderCounts(tile);
  }

  const sum = (values) => values.reduce((total, n) => total + (Number(n) || 0), 0);

  // What a zone or a line counts now: zone -> "n" (objects inside, all labels), line -> "in n · out m".
  function zoneValue(tile, name) {
    const labels = tile.counts && tile.counts.zones[name];
    return labels ? String(sum(Object.values(labels))) : "–";
  }

  function lineValue(tile, name) {
    const line = tile.counts && tile.counts.lines[name];
    return line ? `in ${line.in} · out ${line.out}` : "in – · out –";
  }

  // Configured names first, in their order, then any the counts name that the listing did not (yet).
  function names(configured, counted) {
    const listed = configured.map((entry) => entry.name);
    return [...listed, ...Object.keys(counted || {}).filter((name) => !listed.includes(name))];
  }

  function countRow(kind, name, value, labels) {
    const item = document.createElement("li");
    item.className = `count count-${kind}`;
    item.dataset[kind] = name;
    const what = document.createElement("span");
    what.className = "count-kind";
    what.textContent = kind;
    const title = document.createElement("span");
    title.className = "count-name";
    title.textContent = name;
    const shown = document.createElement("span");
    shown.className = "count-value";
    shown.textContent = value;
    const detail = document.createElement("span");
    detail.className = "count-labels";
    detail.textContent = labels.join(" · ");
    item.append(what, " ", title, " ", shown, " ", detail);
    return item;
  }

  function renderCounts(tile) {
    const section = tile.node.querySelector(".counts");
    const counts = tile.counts || { zones: {}, lines: {} };
    const zoneNames = names(tile.zones, counts.zones);
    const lineNames = names(tile.lines, counts.lines);
    section.hidden = !zoneNames.length && !lineNames.length;
    const rows = [
      ...zoneNames.map((name) => countRow("zone", name, zoneValue(tile, name),
        Object.entries(counts.zones[name] || {}).map(([label, n]) => `${label} ${n}`))),
      ...lineNames.map((name) => countRow("line", name, lineValue(tile, name),
        Object.entries((counts.lines[name] || {}).labels || {})
          .map(([label, crossed]) => `${label} in ${crossed.in} out ${crossed.out}`))),
    ];
    section.querySelector(".count-list").replaceChildren(...rows);
    renderOverlay(tile);
  }

  // A point of a zone or a line as fractions of the picture (px ones need the stream's size).
  function fraction(point, units, size) {
    if (units !== "px") return [point[0], point[1]];
    return size ? [point[0] / size.width, point[1] / size.height] : null;
  }

  const clamp = (value) => Math.min(1, Math.max(0, value));

  // Where a zone's name goes: its polygon's centroid (the mean of its corners when it has no area).
  function zoneAnchor(zone, size) {
    const corners = zone.polygon.map((point) => fraction(point, zone.units, size));
    if (!corners.length || corners.includes(null)) return null;
    let area = 0, x = 0, y = 0;
    corners.forEach(([x0, y0], i) => {
      const [x1, y1] = corners[(i + 1) % corners.length];
      const cross = x0 * y1 - x1 * y0;
      area += cross;
      x += (x0 + x1) * cross;
      y += (y0 + y1) * cross;
    });
    if (Math.abs(area) < 1e-9) {
      return [sum(corners.map((c) => c[0])) / corners.length, sum(corners.map((c) => c[1])) / corners.length];
    }
    return [x / (3 * area), y / (3 * area)];
  }

  // Where a line's name goes: its midpoint.
  function lineAnchor(line, size) {
    const ends = line.points.map((point) => fraction(point, line.units, size));
    if (ends.length !== 2 || ends.includes(null)) return null;
    return [(ends[0][0] + ends[1][0]) / 2, (ends[0][1] + ends[1][1]) / 2];
  }

  function overlayLabel(kind, name, text, anchor) {
    const label = document.createElement("span");
    label.className = `overlay-label overlay-${kind}`;
    label.dataset[kind] = name;
    label.textContent = text;
    // Fractions of the layer, which covers exactly the picture: a resize only moves the layer.
    label.style.left = `${clamp(anchor[0]) * 100}%`;
    label.style.top = `${clamp(anchor[1]) * 100}%`;
    return label;
  }

  function renderOverlay(tile) {
    const labels = [];
    for (const zone of tile.zones) {
      const anchor = zoneAnchor(zone, tile.size);
      if (anchor) labels.push(overlayLabel("zone", zone.name, `${zone.name} ${zoneValue(tile, zone.name)}`, anchor));
    }
    for (const line of tile.lines) {
      const anchor = lineAnchor(line, tile.size);
      if (anchor) labels.push(overlayLabel("line", line.name, `${line.name} ${lineValue(tile, line.name)}`, anchor));
    }
    tile.node.querySelector(".overlay-layer").replaceChildren(...labels);
    layoutOverlay(tile);
  }

  // The layer over the picture as the image shows it (object-fit: contain: centred, letterboxed).
  function layoutOverlay(tile) {
    const video = tile.node.querySelector(".video");
    const image = tile.node.querySelector(".preview");
    const player = tile.node.querySelector(".preview-video");
    let picture = image.naturalWidth > 0 ? { width: image.naturalWidth, height: image.naturalHeight } : tile.size;
    if (tile.view === "h264" && player.videoWidth > 0) picture = { width: player.videoWidth, height: player.videoHeight };
    const boxWidth = video.clientWidth, boxHeight = video.clientHeight;
    const key = picture ? `${boxWidth}x${boxHeight} ${picture.width}x${picture.height}` : `${boxWidth}x${boxHeight}`;
    if (key === tile.laidOut) return;
    tile.laidOut = key;
    const layer = tile.node.querySelector(".overlay-layer");
    const scale = picture ? Math.min(boxWidth / picture.width, boxHeight / picture.height) : 0;
    const width = picture ? picture.width * scale : boxWidth;
    const height = picture ? picture.height * scale : boxHeight;
    layer.style.left = `${(boxWidth - width) / 2}px`;
    layer.style.top = `${(boxHeight - height) / 2}px`;
    layer.style.width = `${width}px`;
    layer.style.height = `${height}px`;
  }

  function onCounts(message) {
    const tile = tiles.get(message.stream);  // counts update a tile, never make one
    if (!tile) return;
    tile.countsAt = performance.now();
    setTracking(tile, true);
    setCounts(tile, message);
  }

  // ---- events: newest first, from the history (GET /events) and live from the websocket

  function setTracking(tile, tracking) {
    tile.tracking = tracking;
    tile.node.querySelector(".events").hidden = !tracking && !tile.events.size;
    if (tracking && !tile.eventsAsked) {
      tile.eventsAsked = true;
      loadEvents(tile);
    }
  }

  const newestFirst = (a, b) => b.at - a.at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

  function shownEvents(tile) {
    const kind = tile.node.querySelector(".kind-filter").value;
    const label = tile.node.querySelector(".event-label-filter").value;
    return [...tile.events.values()]
      .filter((e) => (!kind || e.kind === kind) && (!label || e.label === label))
      .sort(newestFirst)
      .slice(0, EVENT_ROWS);
  }

  // Events of the tile's stream, by id: one arriving both from the history and live is one row.
  function addEvents(tile, events) {
    for (const e of events) {
      if (!e || typeof e.id !== "string" || e.stream !== tile.id || tile.events.has(e.id)) continue;
      tile.events.set(e.id, e);
      noteLabel(tile, e.label);
    }
    if (tile.events.size > EVENTS_KEPT) {
      // Forget the oldest, but never a row shown now (an old kind the filter asked the history for).
      const shown = new Set(shownEvents(tile).map((e) => e.id));
      const kept = [...tile.events.values()].sort(newestFirst)
        .filter((e, i) => i < EVENTS_KEPT - EVENT_ROWS || shown.has(e.id));
      tile.events = new Map(kept.map((e) => [e.id, e]));
      for (const id of tile.rows.keys()) if (!tile.events.has(id)) tile.rows.delete(id);
    }
    tile.node.querySelector(".events").hidden = false;
    renderEvents(tile);
    for (const e of events) {
      if (e && e.kind === "object.end" && tile.events.get(e.id) === e) objectEnded(tile, e);
    }
  }

  function duration(seconds) {
    if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
    const whole = Math.round(seconds), minutes = Math.floor(whole / 60);
    if (minutes < 60) return `${minutes} min ${whole % 60} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function cell(className, text) {
    const part = document.createElement("span");
    part.className = className;
    part.textContent = text;
    return part;
  }

  function eventRow(tile, e) {
    const item = document.createElement("li");
    item.dataset.id = e.id;
    item.dataset.kind = e.kind;
    item.dataset.label = e.label;
    const when = document.createElement("time");
    const moment = new Date(e.at * 1000);
    when.className = "event-time";
    when.dateTime = moment.toISOString();
    // An event of another day (the history keeps weeks) says its date too.
    const today = moment.toDateString() === new Date().toDateString();
    when.textContent = today ? moment.toLocaleTimeString() : moment.toLocaleString();
    when.title = moment.toLocaleString();
    const kind = cell("event-kind", e.kind);
    if (KINDS.has(e.kind)) kind.classList.add(`kind-${e.kind.replace(".", "-")}`);
    const object = cell("event-object", "");
    const swatch = cell("swatch", "");
    swatch.style.background = labelColour(e.label);
    object.append(swatch, e.label);
    if (Number.isInteger(e.track_id)) object.append(" ", cell("track", `#${e.track_id}`));
    let place = "";
    if (e.zone) place = `zone ${e.zone}`;
    else if (e.line) place = `line ${e.line}${e.direction ? ` · ${e.direction}` : ""}`;
    const lasted = typeof e.duration_s === "number" ? duration(e.duration_s) : "";
    const row = { event: e, node: item, snapshot: "unknown", clip: "unknown" };
    const thumb = cell("event-thumb", "");
    const clip = cell("event-clip", "");
    if (Number.isInteger(e.track_id)) {  // media belong to tracked objects
      thumb.append(thumbnail(row));
      clip.append(clipButton(row));
    }
    item.append(thumb, when, kind, object, cell("event-place", place), cell("event-duration", lasted), clip);
    if (tile.media) loadMedia(row);
    return row;
  }

  function rowOf(tile, e) {
    let row = tile.rows.get(e.id);
    if (!row) {
      row = eventRow(tile, e);
      tile.rows.set(e.id, row);
    }
    return row;
  }

  function renderEvents(tile) {
    const list = tile.node.querySelector(".event-list");
    const shown = shownEvents(tile);
    if (!shown.length) {
      const item = document.createElement("li");
      item.className = "none";
      item.textContent = tile.events.size ? "no events pass the filters" : "no events yet";
      list.replaceChildren(item);
      return;
    }
    // A row moves only when its place changes (a new event is put above it, not the list rebuilt): its
    // thumbnail stays loaded, and a button under the pointer or the keyboard's focus stays where it is.
    shown.forEach((e, i) => {
      const { node } = rowOf(tile, e);
      if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
    });
    while (list.children.length > shown.length) list.lastElementChild.remove();
  }

  // ---- an event's snapshot and clip: its object's, written when the object ends (the snapshot) and
  // post_s (5 s) after it (the clip); until then the server answers 404, and the page asks again.

  const SNAPSHOT_RETRIES_MS = [1000, 4000];  // after the object's end (another sink writes the file then)
  const CLIP_RETRIES_MS = [6000, 20000];  // after the object's end: post_s, then a slow encoder's margin

  const mediaPath = (e, file) => `/events/${encodeURIComponent(e.id)}/${file}`;

  function objectName(e) {
    return `${e.label}${Number.isInteger(e.track_id) ? ` #${e.track_id}` : ""}`;
  }

  // The thumbnail shows only once it has loaded: never a broken image while the object lasts.
  function thumbnail(row) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.title = "snapshot";
    button.setAttribute("aria-label", `Snapshot of ${objectName(row.event)}`);
    const image = document.createElement("img");
    image.alt = "";
    image.loading = "lazy";
    image.decoding = "async";
    image.addEventListener("load", () => {
      row.snapshot = "shown";
      button.classList.add("loaded");
    });
    image.addEventListener("error", () => {
      if (row.snapshot === "loading") row.snapshot = "missing";
    });
    button.append(image);
    button.addEventListener("click", () => openViewer(row.event, "snapshot"));
    row.image = image;
    return button;
  }

  function clipButton(row) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "clip";
    button.textContent = "▶ clip";
    button.hidden = true;
    button.setAttribute("aria-label", `Play the clip of ${objectName(row.event)}`);
    button.addEventListener("click", () => openViewer(row.event, "clip"));
    row.clipButton = button;
    return button;
  }

  function loadSnapshot(row) {
    if (!row.image || row.snapshot === "shown" || row.snapshot === "loading") return;
    row.snapshot = "loading";
    // Lazy: a row scrolled far out of the list asks when it comes near. Set again after a 404, the
    // same address is asked again (a failed image is not cached).
    row.image.src = withToken(`${mediaPath(row.event, "snapshot.jpg")}?crop=1&h=64`);
  }

  // Whether the clip exists, asked without downloading it (HEAD); the control shows only then.
  async function checkClip(row) {
    if (!row.clipButton || row.clip === "shown" || row.clip === "checking") return;
    row.clip = "checking";
    try {
      const response = await fetch(mediaPath(row.event, "clip.mp4"), {
        method: "HEAD", headers: authHeaders, cache: "no-store", signal: AbortSignal.timeout(10000),
      });
      row.clip = response.ok ? "shown" : "missing";
    } catch (error) {
      row.clip = "missing";
    }
    row.clipButton.hidden = row.clip !== "shown";
  }

  function loadMedia(row) {
    loadSnapshot(row);
    checkClip(row);
  }

  // The history answered: rows listed before it did, and rows whose media were missing, ask (again).
  function refreshMedia(tile) {
    for (const row of tile.rows.values()) loadMedia(row);
  }

  const atOrBefore = (a, b) => a.at < b.at || (a.at === b.at && a.id <= b.id);

  // Whether ``e`` is an event of the object that ``end`` ends, as the server tells: the same track, at
  // or before the end, and no other end of that track in between (a track id comes back after a restart).
  function endedBy(tile, e, end) {
    if (e.track_id !== end.track_id || !atOrBefore(e, end)) return false;
    for (const other of tile.events.values()) {
      if (other !== end && other.kind === "object.end" && other.track_id === end.track_id
        && atOrBefore(e, other) && atOrBefore(other, end)) return false;
    }
    return true;
  }

  // An object's end: its rows ask again for the snapshot soon, and for the clip once it can be written.
  function objectEnded(tile, end) {
    const retry = (delays, ask) => delays.forEach((delay) => setTimeout(() => {
      if (tiles.get(tile.id) !== tile || !tile.media) return;  // dropped, or no history meanwhile
      for (const row of tile.rows.values()) if (endedBy(tile, row.event, end)) ask(row);
    }, delay));
    retry(SNAPSHOT_RETRIES_MS, loadSnapshot);
    retry(CLIP_RETRIES_MS, checkClip);
  }

  const viewer = document.getElementById("viewer");
  const viewerImage = document.getElementById("viewer-image");
  const viewerVideo = document.getElementById("viewer-video");
  const viewerNote = document.getElementById("viewer-note");

  // The full snapshot (the object's box drawn) or the clip, in one dialog over the page.
  function openViewer(e, what) {
    const moment = new Date(e.at * 1000);
    document.getElementById("viewer-title").textContent =
      `${e.stream} · ${objectName(e)} · ${e.kind} · ${moment.toLocaleString()}`;
    viewerNote.hidden = true;
    stopVideo();
    viewerImage.removeAttribute("src");
    viewerImage.hidden = what !== "snapshot";
    viewerVideo.hidden = what !== "clip";
    if (what === "clip") {
      viewerVideo.src = withToken(mediaPath(e, "clip.mp4"));  // the browser seeks with range requests
      viewerVideo.play().catch(() => { /* paused: the controls start it */ });
    } else {
      viewerImage.src = withToken(`${mediaPath(e, "snapshot.jpg")}?boxes=1`);
    }
    if (!viewer.open) viewer.showModal();
    document.getElementById("viewer-close").focus();
  }

  function stopVideo() {
    if (!viewerVideo.getAttribute("src")) return;
    viewerVideo.pause();
    viewerVideo.removeAttribute("src");
    viewerVideo.load();  // ends its requests
  }

  function viewerProblem(text) {
    viewerNote.textContent = text;
    viewerNote.hidden = false;
  }

  viewerImage.addEventListener("error", () => {
    if (viewer.open && viewerImage.getAttribute("src")) viewerProblem("The snapshot cannot be shown (no longer kept?).");
  });
  viewerVideo.addEventListener("error", () => {
    if (viewer.open && viewerVideo.getAttribute("src")) viewerProblem("The clip cannot be played (no longer kept?).");
  });
  function releaseMedia() {
    stopVideo();
    viewerImage.removeAttribute("src");
  }

  function closeViewer() {
    releaseMedia();  // at once: the dialog's close event comes a task later
    viewer.close();
  }

  // Escape closes the dialog without closeViewer: its cancel event comes at once (when the browser
  // fires it), its close event a task later.
  viewer.addEventListener("cancel", releaseMedia);
  viewer.addEventListener("close", releaseMedia);
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) closeViewer();  // a click on the backdrop, outside the content
  });
  document.getElementById("viewer-close").addEventListener("click", closeViewer);

  function eventsNote(tile, text) {
    const note = tile.node.querySelector(".events-note");
    note.textContent = text || "";
    note.hidden = !text;
  }

  // The history's newest events for the tile's filters (kind= and label= asked of the server), merged
  // with what the tile knows; the filters then choose among all of them in the page, live ones included.
  async function loadEvents(tile) {
    if (tile.historyOff) {
      renderEvents(tile);
      return;
    }
    const query = new URLSearchParams({ stream: tile.id, limit: String(EVENT_ROWS) });
    const kind = tile.node.querySelector(".kind-filter").value;
    const label = tile.node.querySelector(".event-label-filter").value;
    if (kind) query.set("kind", kind);
    if (label) query.set("label", label);
    try {
      const response = await fetch(`/events?${query}`, {
        headers: authHeaders, cache: "no-store", signal: AbortSignal.timeout(10000),
      });
      if (tiles.get(tile.id) !== tile) return;  // dropped meanwhile
      if (response.status === 404) {
        tile.historyOff = true;  // asked again after a reconnect: the server may have restarted
        tile.media = false;  // no history, no snapshots or clips
        eventsNote(tile, "The server keeps no event history: events since this page opened.");
      } else if (!response.ok) {
        eventsNote(tile, `History: ${await errorOf(response)}. Live events only.`);
      } else {
        const { events } = await response.json();
        eventsNote(tile, "");
        tile.media = true;
        addEvents(tile, Array.isArray(events) ? events : []);
        refreshMedia(tile);
        return;
      }
    } catch (error) {
      if (tiles.get(tile.id) !== tile) return;
      eventsNote(tile, "The history did not answer: live events only.");
    }
    renderEvents(tile);
  }

  function onEvent(message) {
    const tile = tiles.get(message.stream);  // an event updates a tile, never makes one
    if (!tile) return;
    setTracking(tile, true);
    addEvents(tile, [message]);
  }

  // ---- the picture: H.264 (the stream's HLS, through hls.js or the browser's own player) where the stream
  // has it and the browser plays it, else MJPEG. MJPEG stays until the video plays, and comes back if it fails.

  let hlsScript = null;
  function loadHlsJs() {  // hls.js ships in the package (static/hls.js.README.md); loaded once, when needed
    if (!hlsScript) {
      hlsScript = new Promise((resolve) => {
        const script = document.createElement("script");
        script.src = withToken("/static/hls.light.min.js");
        script.onload = () => resolve(window.Hls || null);
        script.onerror = () => resolve(null);
        document.head.appendChild(script);
      });
    }
    return hlsScript;
  }

  function setView(tile, view, detail) {
    tile.view = view;
    tile.node.dataset.view = view;
    const pill = tile.node.querySelector(".view");
    pill.textContent = view === "h264" ? "H.264" : "MJPEG";
    pill.title = detail || (view === "h264" ? "H.264 over HLS" : "Motion JPEG");
  }

  async function playH264(tile) {
    tile.player = { hls: null };
    const player = tile.player;
    const video = tile.node.querySelector(".preview-video");
    const url = withToken(`/streams/${encodeURIComponent(tile.id)}/hls/index.m3u8`);
    const Hls = video.canPlayType("application/vnd.apple.mpegurl") && !window.MediaSource ? null : await loadHlsJs();
    if (tiles.get(tile.id) !== tile || tile.player !== player) return;  // dropped meanwhile
    const failed = (detail) => fallBack(tile, player, detail);
    if (Hls && Hls.isSupported()) {
      // Live edge: one segment behind it, no back buffer; the worker stays off (the page's policy runs no blob: code).
      player.hls = new Hls({ enableWorker: false, liveSyncDurationCount: 1, liveMaxLatencyDurationCount: 3,
                             maxBufferLength: 4, backBufferLength: 0 });
      player.hls.on(Hls.Events.ERROR, (event, data) => { if (data.fatal) failed(`H.264 failed: ${data.details}`); });
      player.hls.loadSource(url);
      player.hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    } else {
      tile.player = null;
      tile.h264Unplayable = true;  // this browser cannot: MJPEG it is
      return;
    }
    video.onerror = () => failed("H.264 playback failed");
    video.onloadedmetadata = () => layoutOverlay(tile);
    video.onplaying = () => {
      if (tile.player !== player) return;
      video.hidden = false;
      const image = tile.node.querySelector(".preview");
      image.hidden = true;
      image.removeAttribute("src");  // ends the MJPEG request: H.264 costs a tenth of it
      setView(tile, "h264");
      tile.laidOut = "";
      layoutOverlay(tile);
    };
    video.play().catch(() => { /* autoplay waits for the data; "playing" tells when it starts */ });
  }

  function stopH264(tile) {
    const player = tile.player;
    tile.player = null;
    if (player && player.hls) player.hls.destroy();
    const video = tile.node.querySelector(".preview-video");
    video.onplaying = video.onerror = video.onloadedmetadata = null;
    video.removeAttribute("src");
    video.load();
    video.hidden = true;
  }

  function fallBack(tile, player, detail) {
    if (tile.player !== player || tiles.get(tile.id) !== tile) return;
    stopH264(tile);
    tile.h264Failed = performance.now();
    const image = tile.node.querySelector(".preview");
    image.hidden = false;
    if (tile.view === "h264") image.src = withToken(`/streams/${encodeURIComponent(tile.id)}/mjpeg?t=${Date.now()}`);
    setView(tile, "mjpeg", detail);
  }

  // H.264 once the stream's HLS has segments to start with; after a failure, tried again a minute later.
  function choosePlayer(tile, s) {
    const hls = s.encoder && s.encoder.outputs ? s.encoder.outputs.hls : null;
    if (!hls || tile.player || tile.h264Unplayable) return;
    if (tile.h264Failed && performance.now() - tile.h264Failed < 60_000) return;
    if (hls.segments >= 2) playH264(tile);
  }

  // A stream's entry of GET /streams (or the POST's answer) shown on its tile; ``asked``: when that
  // listing was asked for.
  function showStream(s, asked) {
    const tile = tileFor(s.id);
    choosePlayer(tile, s);
    setState(tile, s.state, s.detail);
    setSize(tile, s.width, s.height);
    setGeometry(tile, Array.isArray(s.zones) ? s.zones : [], Array.isArray(s.lines) ? s.lines : []);
    if (s.counts && asked > tile.countsAt) setCounts(tile, s.counts);
    setTracking(tile, Boolean(s.tracking));
    const q = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
    tile.node.querySelector(".source-fps").textContent = `${q(s.source_fps)} fps`;
    tile.node.querySelector(".processed-fps").textContent = `${q(s.processed_fps)} fps`;
    tile.node.querySelector(".latency").textContent =
      `${q(s.latency_ms.p50, 0)} / ${q(s.latency_ms.p99, 0)} ms`;
    tile.node.querySelector(".drops").textContent = `${s.frames_dropped}`;
    // On a cluster: the node that runs the camera (its id is long; the tooltip has all of it).
    const node = tile.node.querySelector(".node");
    tile.node.querySelector(".node-stat").hidden = !s.node;
    node.textContent = s.node ? s.node.slice(0, 8) : "–";
    node.title = s.node || "";
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
        showStream(s, asked);
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
        showStream(described, performance.now());
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
    if (event.key === "Escape" && !addForm.hidden && !viewer.open) {  // an open viewer closes first
      event.preventDefault();
      closeAddForm();
    }
  });

  let backoff = 500;
  let connected = false;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const protocols = token ? ["stream-detect.v1", `bearer.${token}`] : ["stream-detect.v1"];
    const types = "detections,status,event,counts";
    const socket = new WebSocket(`${scheme}://${location.host}/ws?types=${types}`, protocols);
    const status = document.getElementById("connection");
    socket.addEventListener("open", () => {
      backoff = 500;
      if (connected) {
        // Back after a break: the events of the gap are in the history (and it may be on now).
        for (const tile of tiles.values()) {
          tile.historyOff = false;
          if (tile.tracking) loadEvents(tile);
        }
      }
      connected = true;
      status.textContent = "live";
      status.className = "pill pill-on";
      document.querySelector(".dot").style.background = "var(--ok)";
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (gone.has(message.stream)) return;  // removed: a late message does not bring it back
      if (message.type === "detections") onDetections(message);
      else if (message.type === "event") onEvent(message);
      else if (message.type === "counts") onCounts(message);
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
