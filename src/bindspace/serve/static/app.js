// bindspace search page: plain JavaScript, no build step, talks to /v1/search.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const input = $("q");
  const fileInput = $("file-input");
  const dropzone = $("dropzone");
  const partsList = $("parts");
  const statusLine = $("status");
  const results = $("results");
  const filter = $("filter");
  const kSelect = $("k");
  const textWeight = $("text-weight");
  const textWeightLabel = $("text-weight-label");
  const template = $("part-template");

  /** Query files: {file, modality, weight, node}. */
  const parts = [];

  const VIDEO_EXT = /\.(mp4|webm|mkv|mov|avi|m4v)$/i;
  const AUDIO_EXT = /\.(wav|flac|mp3|ogg|opus|m4a|aac)$/i;
  const IMU_EXT = /\.(npy|csv)$/i;

  function guessModality(file) {
    const name = file.name.toLowerCase();
    if (file.type.startsWith("video/") || VIDEO_EXT.test(name)) return "video";
    if (file.type.startsWith("audio/") || AUDIO_EXT.test(name)) return "audio";
    if (IMU_EXT.test(name)) return "imu";
    if (/depth/.test(name)) return "depth";
    if (/thermal|infrared|\bir\b/.test(name)) return "thermal";
    return "image";
  }

  function setStatus(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  function formatWeight(value) {
    return Number(value).toFixed(1);
  }

  function refreshTextWeight() {
    textWeightLabel.hidden = parts.length === 0;
  }

  function addFiles(files) {
    for (const file of files) {
      const node = template.content.firstElementChild.cloneNode(true);
      const part = { file, modality: guessModality(file), weight: 1, node };
      node.querySelector(".part-name").textContent = file.name;
      node.querySelector(".part-name").title = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
      const select = node.querySelector(".part-modality");
      select.value = part.modality;
      select.setAttribute("aria-label", `Modality of ${file.name}`);
      select.addEventListener("change", () => { part.modality = select.value; });
      const slider = node.querySelector(".part-weight");
      const output = node.querySelector(".part-weight-value");
      slider.setAttribute("aria-label", `Weight of ${file.name}`);
      slider.addEventListener("input", () => {
        part.weight = Number(slider.value);
        output.textContent = formatWeight(slider.value);
      });
      const remove = node.querySelector(".remove");
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.addEventListener("click", () => {
        parts.splice(parts.indexOf(part), 1);
        node.remove();
        refreshTextWeight();
        input.focus();
      });
      parts.push(part);
      partsList.appendChild(node);
    }
    refreshTextWeight();
  }

  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1)); // drop the "data:...;base64," prefix
      };
      reader.onerror = () => reject(new Error(`${file.name}: cannot read the file`));
      reader.readAsDataURL(file);
    });
  }

  function formatTime(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function mediaNode(hit) {
    if (hit.kind === "video") {
      const video = document.createElement("video");
      video.controls = true;
      video.preload = "metadata";
      video.muted = true;
      video.src = hit.preview_url; // #t=start,end plays the matching segment
      if (hit.thumbnail_url) video.poster = hit.thumbnail_url;
      video.setAttribute("aria-label", `Video ${hit.name}`);
      return video;
    }
    if (hit.kind === "audio") {
      const wrap = document.createElement("div");
      wrap.className = "audio-wrap";
      const icon = document.createElement("span");
      icon.className = "audio-icon";
      icon.setAttribute("aria-hidden", "true");
      icon.textContent = "♪";
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = hit.preview_url;
      audio.setAttribute("aria-label", `Audio ${hit.name}`);
      wrap.append(icon, audio);
      return wrap;
    }
    if (hit.thumbnail_url) {
      const link = document.createElement("a");
      link.href = hit.media_url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = document.createElement("img");
      img.src = hit.thumbnail_url;
      img.alt = `${hit.kind} ${hit.name}`;
      img.loading = "lazy";
      img.decoding = "async";
      link.appendChild(img);
      return link;
    }
    const box = document.createElement("div");
    box.className = "placeholder";
    box.textContent = hit.kind.toUpperCase();
    return box;
  }

  function renderHits(hits) {
    results.replaceChildren();
    for (const hit of hits) {
      const card = document.createElement("li");
      card.className = `card kind-${hit.kind}`;
      const media = document.createElement("div");
      media.className = "media";
      media.appendChild(mediaNode(hit));
      const meta = document.createElement("div");
      meta.className = "meta";
      const name = document.createElement("a");
      name.className = "name";
      name.href = hit.media_url;
      name.target = "_blank";
      name.rel = "noopener";
      name.textContent = hit.name;
      name.title = hit.uri;
      const line = document.createElement("div");
      line.className = "line";
      const badge = document.createElement("span");
      badge.className = `badge badge-${hit.kind}`;
      badge.textContent = hit.kind;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = hit.score.toFixed(3);
      score.title = "cosine similarity";
      line.appendChild(badge);
      if (hit.segment_start !== null && hit.segment_end !== null) {
        const seg = document.createElement("span");
        seg.className = "segment";
        seg.textContent = `${formatTime(hit.segment_start)}–${formatTime(hit.segment_end)}`;
        seg.title = "matching segment";
        line.appendChild(seg);
      }
      line.appendChild(score);
      meta.append(name, line);
      card.append(media, meta);
      results.appendChild(card);
    }
  }

  async function search() {
    const text = input.value.trim();
    if (!text && parts.length === 0) {
      setStatus("Type a description or add a file to search.", true);
      input.focus();
      return;
    }
    const button = $("search-button");
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    setStatus("Searching…");
    try {
      const query = [];
      if (text) query.push({ modality: "text", text, weight: parts.length ? Number(textWeight.value) : 1 });
      for (const part of parts) {
        query.push({ modality: part.modality, data: await readBase64(part.file), name: part.file.name,
                     weight: part.weight });
      }
      const body = { parts: query, k: Number(kSelect.value) };
      if (filter.value) body.modality = filter.value;
      const response = await fetch("/v1/search", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const payload = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
      if (!response.ok) {
        results.replaceChildren();
        setStatus(payload.error || `Search failed (HTTP ${response.status})`, true);
        return;
      }
      renderHits(payload.hits);
      const n = payload.hits.length;
      setStatus(n ? `${n} result${n === 1 ? "" : "s"} in ${Math.round(payload.took_ms)} ms` : "No results.");
    } catch (err) {
      setStatus(err.message || String(err), true);
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  async function loadInfo() {
    try {
      const response = await fetch("/v1/info");
      const info = await response.json();
      const items = info.indexed_items === null ? "no index loaded (embed-only mode)"
        : `${info.indexed_items.toLocaleString()} indexed items`;
      $("model-info").textContent = `${info.model} · ${info.embed_dim}-d · ${items}`;
    } catch {
      $("model-info").textContent = "";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  textWeight.addEventListener("input", () => {
    $("text-weight-value").textContent = formatWeight(textWeight.value);
  });
  filter.addEventListener("change", () => { if (results.children.length) search(); });
  dropzone.addEventListener("click", () => fileInput.click());
  dropzone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    dropzone.addEventListener(name, (event) => {
      event.preventDefault();
      dropzone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    dropzone.addEventListener(name, () => dropzone.classList.remove("over"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });

  loadInfo();
  const initial = new URLSearchParams(window.location.search).get("q");
  if (initial) {
    input.value = initial;
    search();
  }
})();
