// Shared by both pages (index.html: completions, fill.html: fill-mask): element lookup, the probability
// colours, visible whitespace, HTML escaping and the hover box's placement.
"use strict";
const $ = (id) => document.getElementById(id);

function shown(text) { return JSON.stringify(text).slice(1, -1).replace(/ /g, "\u2423"); }  // visible spaces, newlines

function colour(p) {  // red (surprising) through yellow to green (likely); sqrt spreads the low end
  return `hsl(${Math.round(120 * Math.sqrt(p))}, 70%, 75%)`;
}

function placeTooltip(e) { $("tooltip").style.left = `${e.clientX + 12}px`; $("tooltip").style.top = `${e.clientY + 14}px`; }
function escape(s) { return s.replace(/[&<>]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[ch]); }
