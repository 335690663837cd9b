"use strict";
// Open a collapsed feature distribution when a link (or the address) points at it.
(() => {
  function reveal(id) {
    const target = document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a[href^='#']");
    if (!link) return;
    const id = link.getAttribute("href").slice(1);
    reveal(id);
    // Inline in a notebook the page is an iframe's srcdoc, whose "#..." links resolve
    // against the notebook's address: scroll within the page instead of leaving it.
    if (location.href === "about:srcdoc") {
      event.preventDefault();
      const target = document.getElementById(id);
      if (target) target.scrollIntoView();
    }
  });
  window.addEventListener("hashchange", () => reveal(location.hash.slice(1)));
  if (location.hash) reveal(location.hash.slice(1));
})();

// Sort the feature table by clicking a column header; filter it by status and free text.
(() => {
  const table = document.getElementById("features");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const search = document.getElementById("search");
  const status = document.getElementById("status-filter");
  const shown = document.getElementById("shown-count");
  const headers = Array.from(table.tHead.rows[0].cells);

  function filter() {
    const text = search.value.trim().toLowerCase();
    const wanted = status.value;
    let visible = 0;
    for (const row of rows) {
      const statusOk = wanted === "all"
        || (wanted === "alerting" ? row.dataset.alerting === "1"
          : wanted === "new" ? row.dataset.new === "1" : row.dataset.status === wanted);
      row.hidden = !(statusOk && row.dataset.search.includes(text));
      if (!row.hidden) visible += 1;
    }
    shown.textContent = `${visible} of ${rows.length}`;
  }

  function key(row, index, numeric) {
    const cell = row.cells[index];
    const raw = cell.dataset.sort ?? cell.textContent.trim();
    if (!numeric) return raw.toLowerCase();
    return raw === "" ? NaN : Number(raw);
  }

  function sort(th) {
    const index = headers.indexOf(th);
    const numeric = th.dataset.type === "num";
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    const sign = ascending ? 1 : -1;
    for (const other of headers) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const sorted = rows.slice().sort((a, b) => {
      const x = key(a, index, numeric);
      const y = key(b, index, numeric);
      if (numeric && Number.isNaN(x) !== Number.isNaN(y)) return Number.isNaN(x) ? 1 : -1;
      if (x < y) return -sign;
      if (x > y) return sign;
      return 0;  // Array.prototype.sort is stable: ties keep the severity order
    });
    body.append(...sorted);
  }

  for (const th of headers) {
    const button = th.querySelector("button");
    if (button) button.addEventListener("click", () => sort(th));
  }
  search.addEventListener("input", filter);
  status.addEventListener("change", filter);
  filter();
})();
