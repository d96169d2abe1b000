// The fill-in page's behaviour: send the text to /v1/fill, show it with each [MASK] replaced by the
// model's likeliest filler, coloured by its probability, and the alternatives on hover.
"use strict";

async function loadInfo() {
  const info = await (await fetch("/v1/info")).json(), c = info.config;
  $("info").textContent = `${info.model} (step ${info.step}) · bidirectional · ${c.n_layer} layers, ` +
    `${c.n_head} heads, ${c.n_embd} dims, context ${c.block_size}, vocab ${c.vocab_size} · ${info.backend} on ${info.device}`;
}

function maskSpan(m) {
  const span = document.createElement("span");
  span.className = "token filled";
  span.textContent = shown(m.token);  // a filler may be a space or a newline: show it
  span.style.background = colour(m.probability);
  span.addEventListener("mouseenter", (e) => showTooltip(m, e));
  span.addEventListener("mousemove", (e) => placeTooltip(e));
  span.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  return span;
}

function showTooltip(m, e) {  // candidates arrive likeliest first
  const rows = m.candidates.map((c) =>
    `<tr><td>${escape(shown(c.token))}</td><td>${(100 * c.probability).toFixed(2)}%</td></tr>`).join("");
  $("tooltip").innerHTML = `<b>${escape(shown(m.token))}</b> probability ${(100 * m.probability).toFixed(2)}%` +
    ` · entropy ${m.entropy.toFixed(2)} nats<br>top ${m.candidates.length} fillers:<table>${rows}</table>`;
  $("tooltip").hidden = false;
  placeTooltip(e);
}

async function fill() {
  $("status").textContent = ""; $("output").textContent = "";
  $("fill").disabled = true;
  try {
    const response = await fetch("/v1/fill", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: $("text").value, top_k: Number($("top_k").value) }) });
    const answer = await response.json();
    if (!response.ok) { $("status").textContent = answer.error.message; return; }
    for (const s of answer.segments) {
      if ("mask" in s) { $("output").appendChild(maskSpan(answer.masks[s.mask])); continue; }
      const plain = document.createElement("span");
      plain.className = "prompt"; plain.textContent = s.text;
      $("output").appendChild(plain);
    }
  } catch (err) {
    $("status").textContent = String(err);
  } finally {
    $("fill").disabled = false;
  }
}

$("fill").addEventListener("click", fill);
loadInfo();
