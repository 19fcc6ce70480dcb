(() => {
  "use strict";
  const API = document.querySelector('meta[name="dyndns-api"]').content;
  const POLL_MS = Number(document.querySelector('meta[name="dyndns-poll-ms"]').content);
  // One page of users at a time, in id order (a million would not fit a page).
  const PAGE = Number(document.querySelector('meta[name="dyndns-page-size"]').content);
  const COLUMNS = ["id", "state", "ipv4", "ipv6", "last_update", "method"];
  const STATES = new Set(["online", "offline", "never", "disabled"]);
  const table = document.getElementById("users");
  const tbody = table.tBodies[0];
  const headers = Array.from(table.tHead.querySelectorAll("th[data-key]"));
  const indicator = document.getElementById("indicator");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  const message = document.getElementById("message");
  const pageLabel = document.getElementById("page");
  const firstButton = document.getElementById("first");
  const previousButton = document.getElementById("previous");
  const nextButton = document.getElementById("next");

  let sortKey = "id";
  let ascending = true;
  let users = [];
  let counts = null;
  let pageAfter = null;  // the id this page starts after (null: the first page)
  let nextAfter = null;  // where the next page starts (null: this is the last)
  const earlier = [];  // pageAfter of each page before this one
  const rows = new Map();
  let issued = 0;
  let shown = 0;
  let lastGood = null;
  let timer = null;

  const pad = (value, width) => String(value).padStart(width, "0");
  const clock = (date) =>
    pad(date.getHours(), 2) + ":" + pad(date.getMinutes(), 2) + ":" + pad(date.getSeconds(), 2);

  function ipv4Key(text) {
    return text.split(".").map((octet) => pad(octet, 3)).join(".");
  }

  function ipv6Key(address) {
    let text = address.toLowerCase();
    const v4 = text.match(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
    if (v4) {
      const n = v4.slice(1).map(Number);
      text = text.slice(0, v4.index) + ((n[0] << 8) | n[1]).toString(16) + ":" +
        ((n[2] << 8) | n[3]).toString(16);
    }
    const double = text.indexOf("::");
    const head = double < 0 ? text : text.slice(0, double);
    const tail = double < 0 ? "" : text.slice(double + 2);
    const first = head ? head.split(":") : [];
    const last = tail ? tail.split(":") : [];
    const middle = double < 0 ? [] : Array(Math.max(0, 8 - first.length - last.length)).fill("0");
    return first.concat(middle, last).map((group) => pad(group, 4)).join(":");
  }

  function sortValue(user, key) {
    const value = user[key];
    if (value === null || value === undefined || value === "") return null;
    if (key === "ipv4") return ipv4Key(String(value));
    if (key === "ipv6") return ipv6Key(String(value));
    if (key === "last_update") {
      const time = Date.parse(value);
      return Number.isNaN(time) ? null : time;
    }
    return String(value);
  }

  function compare(a, b) {
    const x = sortValue(a, sortKey);
    const y = sortValue(b, sortKey);
    let order = 0;
    if (x === null || y === null) {
      order = x === y ? 0 : x === null ? 1 : -1;  // no value: last either way
    } else {
      order = (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    }
    if (order === 0) order = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return order;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setIndicator(text, failed) {
    setText(indicator, text);
    indicator.classList.toggle("error", failed);
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return `HTTP ${response.status}: ${body.error}`;
    } catch (e) {
      /* not JSON */
    }
    return `HTTP ${response.status}`;
  }

  function makeRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.user = id;
    const cells = {};
    for (const key of COLUMNS) {
      const cell = document.createElement(key === "id" ? "th" : "td");
      if (key === "id") cell.scope = "row";
      cell.dataset.col = key;
      if (key === "ipv4" || key === "ipv6") cell.className = "address";
      if (key === "last_update") cell.append(document.createElement("time"));
      tr.append(cell);
      cells[key] = cell;
    }
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Set offline";
    button.setAttribute("aria-label", `Set ${id} offline`);
    button.addEventListener("click", () => setOffline(id));
    action.append(button);
    tr.append(action);
    return { tr, cells, button, pending: false, state: null };
  }

  function fillRow(row, user) {
    for (const key of ["id", "ipv4", "ipv6", "method"]) {
      const value = user[key];
      const cell = row.cells[key];
      setText(cell, value === null || value === undefined ? "\u2014" : String(value));
      cell.classList.toggle("none", value === null || value === undefined);
    }
    const names = Array.isArray(user.names) ? user.names.map(String).join("\n") : "";
    if (row.cells.id.title !== names) row.cells.id.title = names;
    const state = STATES.has(user.state) ? user.state : "unknown";
    row.state = state;
    const stateCell = row.cells.state;
    setText(stateCell, String(user.state));
    const stateClass = "state state-" + state;
    if (stateCell.className !== stateClass) stateCell.className = stateClass;
    const time = row.cells.last_update.firstChild;
    const iso = typeof user.last_update === "string" ? user.last_update : "";
    const parsed = iso ? new Date(iso) : null;
    if (parsed && !Number.isNaN(parsed.getTime())) {
      time.dateTime = iso;
      time.title = iso;
      setText(time, parsed.toLocaleString());
    } else {
      time.removeAttribute("datetime");
      time.removeAttribute("title");
      setText(time, "\u2014");
    }
    row.cells.last_update.classList.toggle("none", !iso);
    row.button.disabled = row.pending || state === "offline" || state === "disabled";
  }

  function render() {
    const sorted = users.slice().sort(compare);
    const seen = new Set();
    sorted.forEach((user, index) => {
      let row = rows.get(user.id);
      if (row === undefined) {
        row = makeRow(user.id);
        rows.set(user.id, row);
      }
      fillRow(row, user);
      seen.add(user.id);
      const here = tbody.children[index] || null;
      if (here !== row.tr) tbody.insertBefore(row.tr, here);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    empty.hidden = users.length !== 0;
    for (const th of headers) {
      const arrow = th.querySelector(".arrow");
      if (th.dataset.key === sortKey) {
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        setText(arrow, ascending ? "\u25B2" : "\u25BC");
      } else {
        th.removeAttribute("aria-sort");
        setText(arrow, "");
      }
    }
    const number = (n) => n.toLocaleString("en-US");
    if (counts !== null) {
      const total = counts.online + counts.offline + counts.never + counts.disabled;
      setText(summary, `${number(total)} user${total === 1 ? "" : "s"}: ` +
        `${number(counts.online)} online, ${number(counts.offline)} offline, ` +
        `${number(counts.never)} never updated, ${number(counts.disabled)} disabled`);
      const from = earlier.length * PAGE;
      setText(pageLabel, users.length === 0 ? `page ${earlier.length + 1}` :
        `page ${earlier.length + 1}: users ${number(from + 1)}\u2013${number(from + users.length)} ` +
        `of ${number(total)}, in id order`);
    }
    firstButton.disabled = previousButton.disabled = earlier.length === 0;
    nextButton.disabled = nextAfter === null;
  }

  function validCounts(value) {
    if (!value || typeof value !== "object") return null;
    const keys = ["online", "offline", "never", "disabled"];
    return keys.every((key) => Number.isInteger(value[key]) && value[key] >= 0) ? value : null;
  }

  async function refresh() {
    const ticket = ++issued;
    try {
      const after = pageAfter === null ? "" : "&after=" + encodeURIComponent(pageAfter);
      const response = await fetch(API + "state?limit=" + PAGE + after, {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(await errorText(response));
      const data = await response.json();
      if (!data || !Array.isArray(data.users)) throw new Error("unexpected answer");
      if (ticket < shown) return;  // a newer answer is on the page already
      shown = ticket;
      users = data.users.filter((user) => user && typeof user.id === "string");
      nextAfter = typeof data.next === "string" ? data.next : null;
      counts = validCounts(data.counts);
      render();
      lastGood = new Date();
      setIndicator("updated " + clock(lastGood), false);
      indicator.title = lastGood.toISOString();
    } catch (error) {
      if (ticket < shown) return;
      const since = lastGood === null ? "" : ` (data from ${clock(lastGood)})`;
      setIndicator(`error: ${error.message}${since}`, true);
    }
  }

  async function setOffline(id) {
    const row = rows.get(id);
    if (row === undefined || row.pending) return;
    if (!window.confirm(`Set ${id} offline?\n\nIts names will answer the offline address, or nothing.`)) {
      return;
    }
    row.pending = true;
    row.button.disabled = true;
    let failure = null;
    try {
      const response = await fetch(API + "users/" + encodeURIComponent(id) + "/offline", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: "{}",
      });
      if (!response.ok) failure = await errorText(response);
    } catch (error) {
      failure = error.message;
    }
    row.pending = false;
    message.hidden = false;
    message.classList.toggle("error", failure !== null);
    setText(message, failure === null ? `${id} was set offline` :
      `could not set ${id} offline: ${failure}`);
    await refresh();
  }

  for (const th of headers) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      ascending = key === sortKey ? !ascending : true;
      sortKey = key;
      render();
    });
  }

  function turnPage(after) {
    pageAfter = after;
    nextAfter = null;
    render();  // the buttons stay off until the page is here
    refresh();
  }

  nextButton.addEventListener("click", () => {
    if (nextAfter === null) return;
    earlier.push(pageAfter);
    turnPage(nextAfter);
  });
  previousButton.addEventListener("click", () => {
    if (earlier.length) turnPage(earlier.pop());
  });
  firstButton.addEventListener("click", () => {
    earlier.length = 0;
    turnPage(null);
  });

  async function tick() {
    if (document.hidden) {
      timer = null;  // resumed by visibilitychange
      return;
    }
    await refresh();
    timer = setTimeout(tick, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) {
      timer = -1;
      tick();
    }
  });

  render();
  timer = -1;
  tick();
})();
