// The page's behaviour: stream a completion from /v1/completions (server-sent events, logprobs=5),
// colour each token by its probability, show details on hover, and draw attention from /v1/attention.
// Helpers shared with the fill-in page ($, colour, shown, escape, placeTooltip) are in common.js.
"use strict";
let info = null, tokens = [], promptIds = [], controller = null;

async function loadInfo() {
  info = await (await fetch("/v1/info")).json();
  const c = info.config;
  $("info").textContent = `${info.model} (step ${info.step}) · ${c.n_layer} layers, ${c.n_head} heads, ` +
    `${c.n_embd} dims, context ${c.block_size}, vocab ${c.vocab_size} · ${info.backend} on ${info.device}`;
  for (const [id, n] of [["layer", c.n_layer], ["head", c.n_head]]) {
    $(id).innerHTML = [...Array(n).keys()].map((i) => `<option value="${i}">${i}</option>`).join("");
  }
  $("max_tokens").max = info.max_tokens_limit;
  $("max_tokens").value = Math.min(Number($("max_tokens").value), info.max_tokens_limit);
}

function tokenSpan(t) {
  const span = document.createElement("span");
  span.className = "token";
  span.textContent = t.text;
  span.style.background = colour(Math.exp(t.logprob));
  span.addEventListener("mouseenter", (e) => showTooltip(t, e));
  span.addEventListener("mousemove", (e) => placeTooltip(e));
  span.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  return span;
}

function showTooltip(t, e) {
  // Sorted here: a JS object lists integer-like keys ("2", "6") first, whatever order the server sent.
  const rows = Object.entries(t.top || {}).sort((a, b) => b[1] - a[1]).map(([tok, lp]) =>
    `<tr><td>${escape(shown(tok))}</td><td>${(100 * Math.exp(lp)).toFixed(2)}%</td></tr>`).join("");
  $("tooltip").innerHTML = `<b>${escape(shown(t.text))}</b> probability ${(100 * Math.exp(t.logprob)).toFixed(2)}%` +
    ` · rank ${t.rank} · entropy ${t.entropy.toFixed(2)} nats<br>top 5 alternatives:<table>${rows}</table>`;
  $("tooltip").hidden = false;
  placeTooltip(e);
}


function request() {
  const num = (id) => Number($(id).value);
  const body = { prompt: $("prompt").value, max_tokens: num("max_tokens"), temperature: num("temperature"),
                 top_p: num("top_p"), stream: true, logprobs: 5, echo: true };
  if (num("top_k") > 0) body.top_k = num("top_k");
  if ($("seed").value !== "") body.seed = num("seed");
  return body;
}

async function generate() {
  $("status").textContent = ""; $("output").textContent = ""; tokens = []; promptIds = [];
  $("generate").disabled = true; $("stop").disabled = false;
  controller = new AbortController();
  try {
    const response = await fetch("/v1/completions", { method: "POST", body: JSON.stringify(request()),
      headers: { "Content-Type": "application/json" }, signal: controller.signal });
    if (!response.ok) { $("status").textContent = (await response.json()).error.message; return; }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", first = true;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/^data: /, ""); buffer = buffer.slice(end + 2);
        if (line === "[DONE]") break;
        const chunk = JSON.parse(line);
        if (chunk.error) { $("status").textContent = chunk.error.message; continue; }
        for (const c of chunk.choices) { first ? addPrompt(c) : addTokens(c); first = false; }
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") $("status").textContent = String(err);
  } finally {
    $("generate").disabled = false; $("stop").disabled = true; drawAttention();
  }
}

function addPrompt(c) {  // the echoed prompt: shown plain, its ids kept for the attention view
  const span = document.createElement("span");
  span.className = "prompt"; span.textContent = c.text;
  $("output").appendChild(span);
  promptIds = c.logprobs ? c.logprobs.token_ids : [];
}

function addTokens(c) {
  const lp = c.logprobs;
  if (!lp) return;
  for (let i = 0; i < lp.tokens.length; i++) {
    const t = { text: lp.tokens[i], id: lp.token_ids[i], logprob: lp.token_logprobs[i], top: lp.top_logprobs[i],
                rank: lp.ranks[i], entropy: lp.entropies[i] };
    tokens.push(t);
    $("output").appendChild(tokenSpan(t));
  }
}

async function drawAttention() {
  const ids = [...promptIds, ...tokens.map((t) => t.id)];
  const canvas = $("attention"), ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!ids.length) return;
  const response = await fetch("/v1/attention", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token_ids: ids, layer: Number($("layer").value), head: Number($("head").value) }) });
  if (!response.ok) { $("status").textContent = (await response.json()).error.message; return; }
  const { weights } = await response.json();
  const n = weights.length, cell = canvas.width / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const w = weights[i][j];
      ctx.fillStyle = `rgba(30, 60, 160, ${Math.sqrt(w)})`;  // sqrt: small weights stay visible
      ctx.fillRect(j * cell, i * cell, Math.ceil(cell), Math.ceil(cell));
    }
  }
  canvas.dataset.tokens = String(n);
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("layer").addEventListener("change", drawAttention);
$("head").addEventListener("change", drawAttention);
loadInfo();
