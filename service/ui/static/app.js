// The try-it page of speechloop (served at /ui; no build step, no dependencies).
//
// The API key is typed by the visitor and kept in sessionStorage (this tab only); it is
// sent as "Authorization: Bearer <key>" on every /v1 call. Server data is put into the
// page with textContent only (never as HTML).
"use strict";

const KEY_STORAGE = "speechloop.apiKey";
const TARGET_RATE = 16000;
const SPACELESS = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]/u;

const $ = (id) => document.getElementById(id);

// -- API ----------------------------------------------------------------------------------

/** The URL of an API path, relative to the page (works behind a path prefix too). */
function apiUrl(path) {
  return new URL(`../${path.replace(/^\//, "")}`, window.location.href).toString();
}

function currentKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

/** Call the API; resolve to the JSON body or throw an Error carrying the server's message. */
async function callApi(path, options = {}) {
  const key = currentKey();
  const headers = new Headers(options.headers || {});
  if (key) {
    headers.set("Authorization", `Bearer ${key}`);
  } // without one the service answers 401 (unless it runs with SPEECHLOOP_AUTH=off)
  let response;
  try {
    response = await fetch(apiUrl(path), { ...options, headers });
  } catch (err) {
    throw new Error(`The service did not answer (${err.message}).`);
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = body && body.error ? body.error : null;
    const message = error ? `${error.type}: ${error.message}` : String(body).slice(0, 300);
    const hint = response.status === 401 ? " (enter your API key at the top of the page)" : "";
    throw new Error(`HTTP ${response.status}: ${message}${hint}`);
  }
  return body;
}

function showError(id, err) {
  const el = $(id);
  el.textContent = err ? err.message || String(err) : "";
  el.hidden = !err;
}

/** Run an async action with its button disabled, reporting any failure in errorId. */
async function busy(button, errorId, action) {
  button.disabled = true;
  showError(errorId, null);
  try {
    await action();
  } catch (err) {
    showError(errorId, err);
  } finally {
    button.disabled = false;
  }
}

function modelLabel(model) {
  return model ? `${model.kind}:${model.version} (${model.backend})` : "?";
}

// -- API key ------------------------------------------------------------------------------

function showKeyStatus() {
  const status = $("key-status");
  status.textContent = currentKey()
    ? "Key set for this tab (sessionStorage). It is sent only to this service's /v1 routes."
    : "No key yet: kept only in this tab (sessionStorage), sent as Authorization: Bearer.";
}

function setupKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) {
      sessionStorage.setItem(KEY_STORAGE, key);
    }
    $("api-key").value = "";
    showKeyStatus();
    loadModels();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    showKeyStatus();
  });
  showKeyStatus();
}

// -- hotword marking ----------------------------------------------------------------------

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A regex source matching a phrase as whole words, as the server decides "found". */
function phrasePattern(phrase) {
  const words = phrase.normalize("NFKC").split(/[^\p{L}\p{N}']+/u).filter(Boolean);
  if (!words.length) {
    return null;
  }
  const body = words.map(escapeRegExp).join("[^\\p{L}\\p{N}']+");
  const head = SPACELESS.test(words[0][0]) ? "" : "(?<![\\p{L}\\p{N}'])";
  const last = words[words.length - 1];
  const tail = SPACELESS.test(last[last.length - 1]) ? "" : "(?![\\p{L}\\p{N}'])";
  return head + body + tail;
}

/** Fill `el` with `text`, wrapping each occurrence of a found hotword in <mark>. */
function renderMarked(el, text, found) {
  el.replaceChildren();
  const patterns = [...found]
    .sort((a, b) => b.length - a.length)
    .map(phrasePattern)
    .filter(Boolean);
  if (!patterns.length) {
    el.textContent = text;
    return;
  }
  const regex = new RegExp(patterns.map((p) => `(?:${p})`).join("|"), "giu");
  const shown = text.normalize("NFKC");
  let at = 0;
  for (const match of shown.matchAll(regex)) {
    if (match.index > at) {
      el.append(document.createTextNode(shown.slice(at, match.index)));
    }
    const mark = document.createElement("mark");
    mark.className = "hotword";
    mark.textContent = match[0];
    el.append(mark);
    at = match.index + match[0].length;
  }
  el.append(document.createTextNode(shown.slice(at)));
}

function chips(el, words) {
  el.replaceChildren();
  if (!words.length) {
    el.textContent = "none";
    return;
  }
  for (const word of words) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = word;
    el.append(chip);
  }
}

// -- recording ----------------------------------------------------------------------------

/** 16-bit PCM WAV bytes of mono float samples. */
function encodeWav(samples, rate) {
  const buffer = new ArrayBuffer(44 + samples.length * 2);
  const view = new DataView(buffer);
  const ascii = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  ascii(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => {
    const s = Math.max(-1, Math.min(1, x));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  });
  return new Blob([buffer], { type: "audio/wav" });
}

/** The recorded blob (webm/ogg, whatever the browser makes) as a 16 kHz mono WAV. */
async function toWav16k(blob) {
  const context = new AudioContext();
  let decoded;
  try {
    decoded = await context.decodeAudioData(await blob.arrayBuffer());
  } finally {
    context.close();
  }
  const frames = Math.max(1, Math.ceil(decoded.duration * TARGET_RATE));
  const offline = new OfflineAudioContext(1, frames, TARGET_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  const rendered = await offline.startRendering();
  return encodeWav(rendered.getChannelData(0), TARGET_RATE);
}

const recording = { recorder: null, chunks: [], clip: null };

function setupRecorder() {
  const button = $("record");
  const status = $("record-status");
  if (!window.MediaRecorder || !navigator.mediaDevices || !window.isSecureContext) {
    button.disabled = true;
    status.textContent = "Recording needs a browser with MediaRecorder on https or localhost.";
    return;
  }
  button.addEventListener("click", async () => {
    if (recording.recorder && recording.recorder.state === "recording") {
      recording.recorder.stop();
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const recorder = new MediaRecorder(stream);
      recording.recorder = recorder;
      recording.chunks = [];
      recorder.addEventListener("dataavailable", (e) => recording.chunks.push(e.data));
      recorder.addEventListener("stop", async () => {
        stream.getTracks().forEach((t) => t.stop());
        button.textContent = "Record";
        button.classList.remove("recording");
        try {
          const raw = new Blob(recording.chunks, { type: recorder.mimeType });
          recording.clip = new File([await toWav16k(raw)], "recording.wav", { type: "audio/wav" });
          $("asr-file").value = "";
          preview(recording.clip);
          status.textContent = "Recorded; it will be transcribed instead of a chosen file.";
        } catch (err) {
          status.textContent = `Could not convert the recording: ${err.message}`;
        }
      });
      recorder.start();
      button.textContent = "Stop";
      button.classList.add("recording");
      status.textContent = "Recording...";
    } catch (err) {
      status.textContent = `Microphone unavailable: ${err.message}`;
    }
  });
}

function preview(file) {
  const audio = $("asr-preview");
  if (audio.src) {
    URL.revokeObjectURL(audio.src);
  }
  audio.src = URL.createObjectURL(file);
  audio.hidden = false;
}

// -- transcribe ---------------------------------------------------------------------------

function hotwordList() {
  return $("hotwords")
    .value.split(/[\n,;]+/)
    .map((h) => h.trim())
    .filter(Boolean);
}

async function transcribe() {
  const chosen = $("asr-file").files[0];
  const clip = chosen || recording.clip;
  if (!clip) {
    throw new Error("Choose a recording (or record one) first.");
  }
  const form = new FormData();
  form.append("audio", clip, clip.name || "audio");
  for (const word of hotwordList()) {
    form.append("hotwords", word);
  }
  const body = await callApi("v1/asr/transcribe", { method: "POST", body: form });
  const text = $("asr-text");
  renderMarked(text, body.text, body.hotwords_found);
  text.classList.toggle("empty", !body.text);
  if (!body.text) {
    text.textContent = "(no speech recognised)";
  }
  chips($("asr-found"), body.hotwords_found);
  chips($("asr-ignored"), body.hotwords_ignored || []);
  $("asr-version").textContent = modelLabel(body.model);
  $("asr-duration").textContent = `${body.duration_s.toFixed(2)} s`;
  $("asr-request").textContent = body.request_id || "";
  const stamps = $("asr-stamps");
  stamps.replaceChildren(
    ...body.timestamps.map((t) => {
      const li = document.createElement("li");
      li.textContent = `${t.token} ${t.start.toFixed(2)}-${t.end.toFixed(2)} s`;
      return li;
    }),
  );
  $("asr-result").hidden = false;
}

// -- verify -------------------------------------------------------------------------------

async function verify() {
  const a = $("verify-a").files[0];
  const b = $("verify-b").files[0];
  if (!a || !b) {
    throw new Error("Choose two recordings to compare.");
  }
  const form = new FormData();
  form.append("audio", a, a.name);
  form.append("audio", b, b.name);
  const body = await callApi("v1/speaker/verify", { method: "POST", body: form });
  const decision = $("verify-decision");
  decision.textContent = body.same_speaker
    ? `Same speaker (score ${body.score.toFixed(3)} >= threshold ${body.threshold.toFixed(3)})`
    : `Different speakers (score ${body.score.toFixed(3)} < threshold ${body.threshold.toFixed(3)})`;
  decision.className = `decision ${body.same_speaker ? "same" : "different"}`;
  const toPercent = (x) => `${Math.max(0, Math.min(100, ((x + 1) / 2) * 100))}%`; // cosine -1..1
  $("verify-bar").style.width = toPercent(body.score);
  $("verify-threshold-mark").style.left = toPercent(body.threshold);
  $("verify-score").textContent = body.score.toFixed(4);
  $("verify-threshold").textContent = body.threshold.toFixed(4);
  $("verify-version").textContent = modelLabel(body.model);
  $("verify-result").hidden = false;
}

// -- models -------------------------------------------------------------------------------

function formatValue(value) {
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  }
  if (value === null || value === undefined) {
    return "";
  }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function row(table, name, value) {
  const tr = table.insertRow();
  tr.insertCell().textContent = name;
  tr.insertCell().textContent = formatValue(value);
}

const HEADLINE = /^(cer|wer|acc|eer|min_?dcf|hotword_(recall|precision|f1)|threshold)$/i;
const MAX_ROWS = 12;

/** Numeric leaves of a nested metrics object, as [dotted.name, value] pairs. */
function numericLeaves(value, prefix = "") {
  if (typeof value === "number") {
    return [[prefix, value]];
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    return [];
  }
  return Object.entries(value).flatMap(([k, v]) => numericLeaves(v, prefix ? `${prefix}.${k}` : k));
}

/** The metrics worth a row: headline names (CER, EER, hotword F1, ...) first. */
function headlineMetrics(metrics) {
  const leaves = numericLeaves(metrics);
  const headline = leaves.filter(([name]) => HEADLINE.test(name.split(".").pop()));
  return (headline.length ? headline : leaves).slice(0, MAX_ROWS);
}

function modelCard(model) {
  const card = document.createElement("article");
  card.className = "model";
  card.dataset.kind = model.kind;
  const title = document.createElement("h3");
  const state = document.createElement("span");
  state.className = model.ready ? "ready" : "not-ready";
  state.textContent = model.ready ? "ready" : "not ready";
  title.append(`${model.kind === "asr" ? "ASR" : "Speaker"}: ${model.version || "-"} `, state);
  const table = document.createElement("table");
  row(table, "backend", model.backend);
  row(table, "source", model.source);
  row(table, "loaded at", model.loaded_at);
  row(table, "pinned", model.pinned);
  row(table, "hot swaps", model.swaps);
  for (const [name, value] of headlineMetrics(model.metrics || {})) {
    row(table, name, value);
  }
  for (const [version, why] of Object.entries(model.refused || {})) {
    row(table, `refused ${version}`, why);
  }
  if (model.last_error) {
    row(table, "last error", model.last_error);
  }
  const all = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "All metrics of this version";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(model.metrics || {}, null, 2);
  all.append(summary, pre);
  card.append(title, table, all);
  return card;
}

async function loadModels() {
  await busy($("refresh-models"), "models-error", async () => {
    const body = await callApi("v1/models");
    $("models").replaceChildren(...body.models.map(modelCard));
  });
}

// -- wiring -------------------------------------------------------------------------------

function setup() {
  setupKey();
  setupRecorder();
  $("asr-file").addEventListener("change", () => {
    const file = $("asr-file").files[0];
    if (file) {
      recording.clip = null;
      $("record-status").textContent = "";
      preview(file);
    }
  });
  $("transcribe").addEventListener("click", () => busy($("transcribe"), "asr-error", transcribe));
  $("verify").addEventListener("click", () => busy($("verify"), "verify-error", verify));
  $("refresh-models").addEventListener("click", loadModels);
  loadModels();
}

document.addEventListener("DOMContentLoaded", setup);
