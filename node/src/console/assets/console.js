// porch console: live views over server-sent events, failing over between members.
// Pages work without this script (plain links and forms); it only keeps them current.
"use strict";
(function () {
  const meta = (name) => (document.querySelector('meta[name="' + name + '"]') || {}).content || "";
  const members = meta("porch-members").split(" ").filter(Boolean);
  const csrf = meta("porch-csrf");
  const banner = document.getElementById("banner");
  const PING_MS = 5000;

  function say(text, kind) {
    if (!banner) return;
    banner.hidden = !text;
    banner.textContent = text || "";
    banner.className = kind || "";
  }
  function toLogin(reason) {
    const next = location.pathname + location.search;
    location.assign("/console/login?m=" + encodeURIComponent(reason || "expired") +
      "&next=" + encodeURIComponent(next));
  }
  function clock(ms) { return new Date(ms).toISOString().slice(11, 19); }
  function duration(ms) {
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const s = Math.floor(ms / 1000) % 60;
    return Math.floor(ms / 60000) + " min " + (s < 10 ? "0" : "") + s + " s";
  }
  // The other bases to try after `failed`, this page's own node first.
  function candidates(failed) {
    const all = [location.origin].concat(members.filter((m) => m !== location.origin));
    const start = Math.max(0, all.indexOf(failed));
    return all.slice(start + 1).concat(all.slice(0, start + 1));
  }

  // ---- a job's page ----
  const table = document.getElementById("nodes");
  if (table) followJob(table);

  function followJob(table) {
    const job = table.dataset.job;
    let next = Number(table.dataset.nextEvent || 0);
    const offset = Number(table.dataset.now || Date.now()) - Date.now();
    const badge = document.getElementById("job-state");
    const live = document.getElementById("live");
    const running = new Set(table.querySelectorAll("tr.s-running"));
    const dirty = new Set();
    let base = location.origin, source = null, watchdog = null, ended = table.dataset.ended === "1";
    let attempt = 0;

    setInterval(() => {
      const now = Date.now() + offset;
      running.forEach((row) => {
        const start = Number(row.dataset.start || 0);
        if (start) row.querySelector(".du").textContent = duration(Math.max(0, now - start));
      });
    }, 1000);

    function setJobState(state) {
      if (!badge || !state) return;
      badge.textContent = state;
      badge.className = "badge s-" + state;
      if (["finished", "stopped", "failed"].includes(state)) {
        const stop = document.getElementById("stop");
        if (stop) stop.remove();
      }
    }
    function apply(event) {
      if (!event.node) return;
      const row = document.getElementById("node-" + event.node);
      if (!row) return;
      const state = event.type.replace("node_", "");
      row.className = "s-" + state;
      row.querySelector(".st").textContent = state;
      if (state === "running") {
        row.dataset.start = event.at;
        row.querySelector(".t").textContent = clock(event.at);
        row.querySelector(".du").textContent = "0 ms";
        running.add(row);
      } else {
        running.delete(row);
        const start = Number(row.dataset.start || 0);
        if (start) row.querySelector(".du").textContent = duration(Math.max(0, event.at - start));
      }
      if (event.message) row.querySelector(".msg").textContent = event.message;
      const group = row.closest("tbody");
      if (group) dirty.add(group);
    }
    function redrawLevels() {
      dirty.forEach((group) => {
        const item = document.querySelector('#levels li[data-level="' + group.dataset.level + '"]');
        if (!item) return;
        const order = ["finished", "running", "failed", "errored", "skipped", "new"];
        const counts = Object.fromEntries(order.map((s) => [s, 0]));
        let total = 0;
        group.querySelectorAll("tr[id]").forEach((row) => {
          const s = row.className.slice(2);
          if (s in counts) counts[s]++;
          total++;
        });
        const bar = item.querySelector(".bar");
        bar.replaceChildren(...order.filter((s) => counts[s]).map((s) => {
          const span = document.createElement("span");
          span.className = "s-" + s;
          span.style.flexGrow = counts[s];
          return span;
        }));
        item.querySelector(".counts").textContent = total + " nodes: " +
          order.filter((s) => counts[s]).map((s) => counts[s] + " " + s).join(", ");
      });
      dirty.clear();
    }
    function arm() {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => failOver("stopped answering"), 2 * PING_MS + 2000);
    }
    function connect(to) {
      if (source) source.close();
      base = to;
      const url = base + "/console/live/jobs/" + job + "?start=" + next;
      source = new EventSource(url, { withCredentials: true });
      arm();
      source.addEventListener("open", () => {
        arm();
        attempt = 0;
        if (base !== location.origin) say("This page's node stopped answering: following the job through " + base + ".");
        else say("");
      });
      source.addEventListener("events", (e) => {
        arm();
        const batch = JSON.parse(e.data);
        batch.events.forEach(apply);
        if (batch.events.length) next = batch.events[batch.events.length - 1].id + 1;
        setJobState(batch.state);
        requestAnimationFrame(redrawLevels);
        if (live) live.textContent = "Live · " + batch.events.length + " new events at " + new Date().toLocaleTimeString();
      });
      source.addEventListener("ping", arm);
      source.addEventListener("end", (e) => {
        clearTimeout(watchdog);
        source.close();
        ended = true;
        setJobState(JSON.parse(e.data).state);
        if (live) live.textContent = "The job is over (" + JSON.parse(e.data).state + ").";
      });
      source.addEventListener("gone", (e) => {
        clearTimeout(watchdog);
        source.close();
        say(JSON.parse(e.data).msg, "error");
      });
      source.addEventListener("session", (e) => {
        source.close();
        const reason = JSON.parse(e.data).reason || "expired";
        toLogin(reason.includes("expired") ? "expired" : reason === "required" ? "required" : "revoked");
      });
      source.onerror = () => failOver("stopped answering");
    }
    function failOver(why) {
      if (ended) return;
      clearTimeout(watchdog);
      if (source) source.close();
      const failed = base;
      const options = candidates(failed);
      attempt++;
      const to = options[(attempt - 1) % options.length];
      say("Node " + failed + " " + why + "; trying " + to + "…", "error");
      setTimeout(() => connect(to), Math.min(4000, 250 * attempt));
    }
    if (!ended) connect(location.origin);
    else if (live) live.textContent = "The job is over.";

    const stop = document.getElementById("stop");
    if (stop) stop.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = stop.querySelector("button");
      button.disabled = true;
      for (const to of [base].concat(candidates(base).filter((b) => b !== base))) {
        try {
          const r = await fetch(to + "/console/jobs/" + job + "/stop", {
            method: "POST", credentials: "include",
            headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
            body: "csrf=" + encodeURIComponent(csrf),
          });
          const answer = await r.json().catch(() => ({}));
          if (r.status === 401) return toLogin("expired");
          if (r.ok) {
            stop.remove();
            if (live) live.textContent = "Stop requested: nodes already running finish their run, the others are skipped.";
            return;
          }
          if (r.status < 500) { say(answer.msg || ("stop answered " + r.status), "error"); button.disabled = false; return; }
        } catch (err) { /* that node is down: try the next */ }
      }
      say("No node accepted the stop: is a quorum up?", "error");
      button.disabled = false;
    });
  }

  // ---- the cluster page ----
  const memberTable = document.getElementById("members");
  if (memberTable) followCluster(memberTable);

  function followCluster(memberTable) {
    const log = document.getElementById("elections");
    const seen = {};
    function note(text) {
      const item = document.createElement("li");
      const time = document.createElement("time");
      time.textContent = new Date().toISOString().slice(11, 23);
      item.append(time, " " + text);
      log.prepend(item);
      while (log.children.length > 200) log.lastChild.remove();
    }
    function set(row, cls, text) { const c = row.querySelector("." + cls); if (c) c.textContent = text; }
    memberTable.querySelectorAll("tr[data-url]").forEach((row) => {
      const id = row.id.replace("member-", "");
      const url = row.dataset.url;
      let source = null, watchdog = null;
      function down(why) {
        if (seen[id] && seen[id].role !== "down") note("node " + id + " " + why);
        seen[id] = { role: "down" };
        row.className = "r-down";
        set(row, "role", "not answering");
      }
      function arm() { clearTimeout(watchdog); watchdog = setTimeout(() => { down("stopped answering"); reconnect(); }, 3000); }
      function reconnect() { if (source) source.close(); setTimeout(open, 1000); }
      function open() {
        source = new EventSource(url + "/console/live/node", { withCredentials: true });
        arm();
        source.addEventListener("node", (e) => {
          arm();
          const v = JSON.parse(e.data);
          const before = seen[id];
          if (!before || before.role !== v.role || before.term !== v.term || before.leader !== v.leader) {
            if (v.role === "leader") note("node " + id + " leads, term " + v.term);
            else if (v.role === "candidate") note("node " + id + " stands for election, term " + v.term);
            else note("node " + id + " is " + v.role + ", term " + v.term +
              (v.leader == null ? ", no leader known" : ", follows node " + v.leader));
          }
          seen[id] = { role: v.role, term: v.term, leader: v.leader };
          row.className = "r-" + v.role;
          set(row, "role", v.role);
          set(row, "term", v.term);
          set(row, "leader", v.leader == null ? "none" : v.leader);
          set(row, "log", v.last_log_index);
          set(row, "commit", v.committed_index);
          set(row, "applied", v.applied_index);
          set(row, "contact", v.contact_age_ms == null ? "never" : v.contact_age_ms + " ms ago");
          set(row, "agents", v.agents_connected);
          if (v.role === "leader") {
            const leaderEl = document.getElementById("leader"), termEl = document.getElementById("term");
            if (leaderEl) leaderEl.textContent = "node " + v.node_id;
            if (termEl) termEl.textContent = v.term;
            set(row, "lag", 0);
            Object.entries(v.replicated_index).forEach(([other, matched]) => {
              const r = document.getElementById("member-" + other);
              if (r) set(r, "lag", matched == null ? v.last_log_index : Math.max(0, v.last_log_index - matched));
            });
          }
        });
        source.addEventListener("session", (e) => { source.close(); toLogin("expired"); });
        source.onerror = () => { down("stopped answering"); if (source.readyState === 2) reconnect(); };
      }
      open();
    });
  }

  // ---- `porch dev` hands its admin token over in the fragment (never sent to a server) ----
  const login = document.querySelector('form[action="/console/login"]');
  if (login && location.hash.startsWith("#token=")) {
    const token = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, "", location.pathname + location.search);
    const field = document.createElement("input");
    field.type = "hidden"; field.name = "token"; field.value = token;
    login.append(field);
    login.querySelectorAll("[required]").forEach((i) => i.removeAttribute("required"));
    login.submit();
  }
})();
