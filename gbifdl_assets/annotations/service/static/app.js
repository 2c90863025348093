/* The map page of the annotation service.
 *
 * Security: every piece of user text (names, comments, rulesets) reaches the page through
 * textContent or element attributes set by the DOM API, never through innerHTML, and the server's
 * Content-Security-Policy forbids inline script; so a comment like <script>…</script> stays text.
 * Credentials live in sessionStorage (this tab only) and go out only as an Authorization header
 * to this origin. Everything is served by the service itself: no CDN, no tile server.
 */
(function () {
  "use strict";

  const state = {
    config: null,
    auth: sessionStorage.getItem("gbifdl-auth"),
    user: sessionStorage.getItem("gbifdl-user"),
    taxon: null,          // {key, name}
    rules: [],
    selectedRuleId: null,
    mode: null,           // "draw" | "country" | null
    draftVertices: [],    // [[lat, lng], ...] while drawing
    draftWkt: null,       // the finished draft geometry
    draftLabel: "",
    taxonNames: new Map(),  // taxon key -> scientific name, as far as the page or the service knows
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node[k] = v;
    });
    children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return node;
  };

  // ------------------------------------------------------------------ status line
  function status(message, kind) {
    const s = $("status");
    s.textContent = message || "";
    s.className = kind || "";
  }

  // ------------------------------------------------------------------ HTTP
  function utf8Base64(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin);
  }

  async function request(method, path, body, authOverride) {
    const headers = { "X-Requested-With": "gbifdl-map", "Accept": "application/json" };
    const auth = authOverride || state.auth;
    if (auth) headers["Authorization"] = "Basic " + auth;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    let data = null;
    const text = await response.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { message: text }; }
    }
    if (!response.ok) {
      const message = (data && data.message) || (response.status + " " + response.statusText);
      const error = new Error(message);
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }
  const api = (path) => state.config.apiPrefix + path;

  async function pageAll(path, params) {
    const out = [];
    const limit = 1000;
    for (let offset = 0; ; offset += limit) {
      const query = new URLSearchParams({ ...params, limit: String(limit), offset: String(offset) });
      const page = await request("GET", api(path) + "?" + query.toString());
      out.push(...page);
      if (page.length < limit) return out;
    }
  }

  // ------------------------------------------------------------------ login
  function showLogin() {
    const loggedIn = Boolean(state.auth && state.user);
    $("login-form").hidden = loggedIn;
    $("logged-in").hidden = !loggedIn;
    $("login-status").textContent = loggedIn ? "Logged in as " + state.user : "";
    updateSaveButton();
    renderRuleDetail();
  }

  async function login(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const auth = utf8Base64(user + ":" + $("login-password").value);
    try {
      const who = await request("GET", "/user/login", undefined, auth);
      state.auth = auth;
      state.user = who.userName;
      sessionStorage.setItem("gbifdl-auth", auth);
      sessionStorage.setItem("gbifdl-user", who.userName);
      $("login-password").value = "";
      status("Logged in as " + who.userName, "ok");
    } catch (e) {
      status("Log-in failed: " + e.message, "error");
    }
    showLogin();
  }

  function logout() {
    state.auth = null;
    state.user = null;
    sessionStorage.removeItem("gbifdl-auth");
    sessionStorage.removeItem("gbifdl-user");
    status("Logged out", "ok");
    showLogin();
  }

  // ------------------------------------------------------------------ WKT
  function parseWkt(text) {
    // POLYGON / MULTIPOLYGON -> array of polygons, each an array of rings of [lat, lng]
    const upper = text.trim().toUpperCase();
    const multi = upper.startsWith("MULTIPOLYGON");
    if (!multi && !upper.startsWith("POLYGON")) return [];
    const tokens = text.slice(text.indexOf("(")).match(/\(|\)|,|[-+0-9.eE]+/g) || [];
    let i = 0;
    function parseList(inner) {  // "(" inner ("," inner)* ")"
      if (tokens[i] !== "(") throw new Error("bad WKT");
      i += 1;
      const items = [inner()];
      while (tokens[i] === ",") { i += 1; items.push(inner()); }
      if (tokens[i] !== ")") throw new Error("bad WKT");
      i += 1;
      return items;
    }
    const point = () => {
      const x = parseFloat(tokens[i]); const y = parseFloat(tokens[i + 1]);
      i += 2;
      return [y, x];
    };
    const ring = () => parseList(point);
    const polygon = () => parseList(ring);
    return multi ? parseList(polygon) : [polygon()];
  }

  function ringToWkt(latlngs) {
    const pts = latlngs.map((p) => [p[1], p[0]]);
    pts.push(pts[0]);
    return "POLYGON ((" + pts.map((p) => p[0].toFixed(4) + " " + p[1].toFixed(4)).join(", ") + "))";
  }

  // ------------------------------------------------------------------ map
  let map, rulesLayer, draftLayer, countriesLayer;

  function colourOf(label) {
    const term = (state.config.labels || []).find((t) => t.term === label);
    return term ? term.color : "#6b7280";
  }

  function initMap() {
    map = L.map("map", {
      worldCopyJump: false, minZoom: 1, maxZoom: 12, zoomSnap: 0.5,
      maxBounds: [[-90, -200], [90, 200]], attributionControl: true,
    }).setView([30, 10], 2);
    map.attributionControl.setPrefix("");
    map.attributionControl.addAttribution("Natural Earth (public domain)");
    map.createPane("countries").style.zIndex = 350;
    rulesLayer = L.featureGroup().addTo(map);
    draftLayer = L.featureGroup().addTo(map);
    map.on("click", onMapClick);
    map.on("dblclick", (e) => { if (state.mode === "draw") { L.DomEvent.stop(e); finishDraw(); } });
  }

  async function loadBasemap() {
    const world = await request("GET", "/ui/api/world.geojson");
    countriesLayer = L.geoJSON(world, {
      pane: "countries",
      style: { color: "#9ca3af", weight: 0.7, fillColor: "#f9fafb", fillOpacity: 1 },
      onEachFeature: (feature, layer) => {
        layer.on("click", (e) => {
          if (state.mode === "country") {
            L.DomEvent.stop(e);
            pickCountry(feature.properties);
          }
        });
      },
    }).addTo(map);
  }

  function onMapClick(e) {
    if (state.mode !== "draw") return;
    const p = e.latlng.wrap();
    state.draftVertices.push([Math.max(-85, Math.min(85, p.lat)), p.lng]);
    drawDraft();
  }

  function drawDraft() {
    draftLayer.clearLayers();
    if (state.draftWkt) {
      const polys = parseWkt(state.draftWkt);
      L.polygon(polys, { color: "#111827", weight: 2, dashArray: "6 4", fillOpacity: 0.15 }).addTo(draftLayer);
    } else if (state.draftVertices.length) {
      L.polyline(state.draftVertices, { color: "#111827", weight: 2, dashArray: "4 4" }).addTo(draftLayer);
      state.draftVertices.forEach((v) => L.circleMarker(v, { radius: 4, color: "#111827" }).addTo(draftLayer));
    }
    const n = state.draftVertices.length;
    $("finish-draw").disabled = !(state.mode === "draw" && n >= 3);
    if (state.draftWkt) {
      $("draft-info").textContent = "Draft: " + state.draftLabel + ". Choose a label and save.";
    } else if (state.mode === "draw") {
      $("draft-info").textContent = n + " corner(s); click to add, “Finish polygon” when done.";
    }
    updateSaveButton();
    schedulePreview();
  }

  function setMode(mode) {
    state.mode = state.mode === mode ? null : mode;
    $("mode-draw").classList.toggle("active", state.mode === "draw");
    $("mode-country").classList.toggle("active", state.mode === "country");
    // picking a country: clicks go through the rules' shapes to the country beneath
    map.getContainer().classList.toggle("picking", state.mode === "country");
    if (state.mode === "draw") {
      map.doubleClickZoom.disable();
      state.draftWkt = null;
      state.draftVertices = [];
      $("draft-info").textContent = "Click the map to add corners, then “Finish polygon”.";
    } else {
      map.doubleClickZoom.enable();
      if (state.mode === "country") $("draft-info").textContent = "Click a country on the map.";
    }
    drawDraft();
  }

  function finishDraw() {
    if (state.draftVertices.length < 3) return;
    state.draftWkt = ringToWkt(state.draftVertices);
    state.draftLabel = "polygon with " + state.draftVertices.length + " corners";
    state.draftVertices = [];
    state.mode = null;
    $("mode-draw").classList.remove("active");
    map.doubleClickZoom.enable();
    drawDraft();
  }

  async function pickCountry(props) {
    const code = props.ISO_A2 || props.ISO_A3;
    if (!code) { status("This area has no ISO code; draw it instead.", "error"); return; }
    status("Loading " + (props.NAME || code) + " …");
    try {
      const area = await request("GET", "/ui/api/country/" + encodeURIComponent(code));
      state.draftWkt = area.geometry;
      state.draftLabel = area.name + " (" + area.code + ")" + (area.note ? "; " + area.note : "");
      state.draftVertices = [];
      setMode("country");  // toggles the mode off
      status("");
      drawDraft();
    } catch (e) {
      status(e.message, "error");
    }
  }

  function clearDraft() {
    state.draftWkt = null;
    state.draftVertices = [];
    state.mode = null;
    $("mode-draw").classList.remove("active");
    $("mode-country").classList.remove("active");
    map.getContainer().classList.remove("picking");
    $("draft-info").textContent = "Draw: click the map to add corners, then “Finish polygon”. Pick: click a country.";
    drawDraft();
  }

  function updateSaveButton() {
    // the button says why it cannot save yet; a rule without a taxon is allowed (GBIF allows it) but
    // the page asks before saving one
    let why = "";
    if (!state.auth) why = "Log in to save a rule.";
    else if (state.mode === "draw" && state.draftVertices.length) why = "Finish the polygon first (“Finish polygon” or double-click).";
    else if (!state.draftWkt) why = "Draw a polygon or pick a country first.";
    $("save-rule").disabled = Boolean(why);
    $("save-rule").title = why;
    const note = $("save-why");
    if (why) {
      note.textContent = "Save is off: " + why;
      note.className = "muted small";
    } else if (!state.taxon) {
      note.textContent = "No taxon chosen: this rule would flag every species in the area (you will be asked to confirm).";
      note.className = "small warn";
    } else {
      note.textContent = "";
      note.className = "muted small";
    }
  }

  // ------------------------------------------------------------------ taxa
  async function searchTaxa(event) {
    event.preventDefault();
    const q = $("taxon-query").value.trim();
    const list = $("taxon-results");
    list.replaceChildren();
    if (!q) return;
    status("Searching …");
    try {
      const found = await request("GET", "/ui/api/taxa?q=" + encodeURIComponent(q));
      status(found.length ? "" : "No taxon found for " + q, found.length ? "" : "error");
      found.forEach((t) => {
        const name = t.scientificName || t.canonicalName || String(t.key);
        const li = el("li", { class: "taxon-result", dataset: { key: String(t.key) } },
          el("strong", {}, name), " ", el("span", { class: "muted" }, (t.rank || "") + " · " + t.key));
        li.addEventListener("click", () => { list.replaceChildren(); chooseTaxon({ key: t.key, name }); });
        list.append(li);
      });
    } catch (e) {
      status(e.message, "error");
    }
  }

  async function chooseTaxon(taxon) {
    state.taxon = taxon;
    if (!/^taxon \d+$/.test(taxon.name)) state.taxonNames.set(taxon.key, taxon.name);
    state.selectedRuleId = null;
    history.replaceState(null, "", "#taxon=" + encodeURIComponent(taxon.key));
    $("taxon-selected").textContent = "Chosen: " + taxon.name + " (" + taxon.key + ")";
    $("taxon-selected").classList.remove("muted");
    $("taxon-clear").hidden = false;
    updateSaveButton();
    schedulePreview();
    await loadRules();
  }

  async function clearTaxon() {
    state.taxon = null;
    state.selectedRuleId = null;
    history.replaceState(null, "", location.pathname);
    $("taxon-selected").textContent = "No taxon chosen: new rules would apply to every species.";
    $("taxon-selected").classList.add("muted");
    $("taxon-clear").hidden = true;
    updateSaveButton();
    schedulePreview();
    await loadRules();
  }

  // ------------------------------------------------------------------ rules
  async function loadRules(fit) {
    // a taxon's rules; without a taxon, the rules that have none (they apply to every species)
    $("rules-title").textContent = state.taxon ? "Rules of this taxon" : "Rules without a taxon (every species)";
    try {
      state.rules = await pageAll("/rule", { taxonKey: state.taxon ? String(state.taxon.key) : "null" });
    } catch (e) {
      status(e.message, "error");
      return;
    }
    renderRules(fit !== false);
  }

  function renderRules(fit) {
    rulesLayer.clearLayers();
    const list = $("rule-list");
    list.replaceChildren();
    if (!state.rules.length) list.append(el("li", { class: "muted" }, "No rules yet."));
    state.rules.forEach((rule) => {
      const colour = colourOf(rule.annotation);
      let shape = null;
      try {
        shape = L.polygon(parseWkt(rule.geometry), {
          className: "rule-shape", color: colour, fillColor: colour, fillOpacity: 0.3, weight: rule.id === state.selectedRuleId ? 3 : 1.5,
        });
        shape.on("click", (e) => { if (!state.mode) { L.DomEvent.stop(e); selectRule(rule.id); } });
        shape.addTo(rulesLayer);
      } catch (e) { /* a geometry the page cannot draw is still listed */ }
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour;
      const li = el("li", { class: "rule-item" + (rule.id === state.selectedRuleId ? " selected" : ""),
                            dataset: { ruleId: String(rule.id), annotation: rule.annotation } },
        swatch, el("strong", {}, rule.annotation), " #" + rule.id + " by " + (rule.createdBy || "?"),
        el("span", { class: "muted" }, " ▲" + rule.supportedBy.length + " ▼" + rule.contestedBy.length));
      li.addEventListener("click", () => selectRule(rule.id));
      list.append(li);
    });
    if (fit && rulesLayer.getLayers().length) {
      map.fitBounds(rulesLayer.getBounds(), { maxZoom: 5, padding: [20, 20] });
    }
    renderRuleDetail();
  }

  async function selectRule(id) {
    state.selectedRuleId = id;
    renderRules(false);
    await loadComments();
  }

  function currentRule() {
    return state.rules.find((r) => r.id === state.selectedRuleId) || null;
  }

  const rulesetNames = new Map();
  const namesAsked = new Set();

  function taxonLabel(key) {
    const name = state.taxonNames.get(key);
    if (name) return name + " (" + key + ")";
    if (!namesAsked.has(key)) {
      namesAsked.add(key);
      lookUpName(key);
    }
    return String(key);
  }

  async function lookUpName(key) {
    // the service's names first (no request to GBIF), then a look-up through its GBIF client
    try {
      const known = await request("GET", "/ui/api/taxon-names?key=" + encodeURIComponent(key));
      let name = known[String(key)];
      if (!name) {
        const found = await request("GET", "/ui/api/taxa?q=" + encodeURIComponent(key));
        name = found.length ? (found[0].scientificName || found[0].canonicalName) : null;
      }
      if (name) {
        state.taxonNames.set(key, name);
        renderRuleDetail();
      }
    } catch (e) { /* the key alone still identifies the taxon */ }
  }

  function yearsText(range) {
    if (!range) return "";
    const [from, to] = range.split(",");
    if (from === "*") return "until " + to;
    if (to === "*") return "from " + from;
    return from === to ? from : from + " to " + to;
  }

  function renderRuleDetail() {
    const rule = currentRule();
    $("rule-detail").hidden = !rule;
    if (!rule) return;
    $("rule-detail-title").textContent = "Rule #" + rule.id + ": " + rule.annotation;
    const fields = $("rule-fields");
    fields.replaceChildren();
    const add = (k, v) => { if (v !== null && v !== undefined && v !== "") fields.append(el("dt", {}, k), el("dd", {}, v)); };
    add("taxon", rule.taxonKey === null ? "any (every species in the area)" : taxonLabel(rule.taxonKey));
    add("ruleset", rule.rulesetId === null ? "" : (rulesetNames.get(rule.rulesetId) || "#" + rule.rulesetId));
    add("years", yearsText(rule.yearRange));
    add("basis of record", rule.basisOfRecord ? (rule.basisOfRecordNegated ? "all except " : "") + rule.basisOfRecord.join(", ") : "");
    add("dataset", rule.datasetKey);
    add("created", (rule.created || "").slice(0, 16).replace("T", " ") + " by " + rule.createdBy);
    add("supported by", rule.supportedBy.join(", "));
    add("contested by", rule.contestedBy.join(", "));
    const mine = state.user && rule.supportedBy.includes(state.user);
    const against = state.user && rule.contestedBy.includes(state.user);
    $("support-button").textContent = (mine ? "Withdraw support" : "Support") + " (" + rule.supportedBy.length + ")";
    $("contest-button").textContent = (against ? "Withdraw contest" : "Contest") + " (" + rule.contestedBy.length + ")";
    [$("support-button"), $("contest-button"), $("comment-add")].forEach((b) => { b.disabled = !state.auth; });
    $("delete-rule-button").hidden = !(state.user && state.user === rule.createdBy);
  }

  async function vote(kind) {
    const rule = currentRule();
    if (!rule) return;
    const mine = kind === "support" ? rule.supportedBy.includes(state.user) : rule.contestedBy.includes(state.user);
    const action = mine ? (kind === "support" ? "removeSupport" : "removeContest") : kind;
    try {
      const updated = await request("POST", api("/rule/" + rule.id + "/" + action));
      state.rules = state.rules.map((r) => (r.id === updated.id ? updated : r));
      renderRules(false);
      status("Vote recorded", "ok");
    } catch (e) {
      status(e.message, "error");
    }
  }

  async function deleteRule() {
    const rule = currentRule();
    if (!rule || !window.confirm("Delete rule #" + rule.id + "?")) return;
    try {
      await request("DELETE", api("/rule/" + rule.id));
      state.selectedRuleId = null;
      status("Rule #" + rule.id + " deleted", "ok");
      await loadRules(false);
    } catch (e) {
      status(e.message, "error");
    }
  }

  async function loadComments() {
    const list = $("comment-list");
    list.replaceChildren();
    const rule = currentRule();
    if (!rule) return;
    try {
      const comments = await request("GET", api("/rule/" + rule.id + "/comment?limit=1000"));
      if (!comments.length) list.append(el("li", { class: "muted" }, "No comments."));
      comments.forEach((c) => {
        list.append(el("li", { class: "comment", dataset: { commentId: String(c.id) } },
          el("div", { class: "comment-meta" }, (c.createdBy || "?") + ", " + (c.created || "").slice(0, 16).replace("T", " ")),
          el("div", { class: "comment-text" }, c.comment)));
      });
    } catch (e) {
      status(e.message, "error");
    }
  }

  async function addComment() {
    const rule = currentRule();
    const text = $("comment-text").value;
    if (!rule || !text.trim()) return;
    try {
      await request("POST", api("/rule/" + rule.id + "/comment"), { comment: text });
      $("comment-text").value = "";
      status("Comment added", "ok");
      await loadComments();
    } catch (e) {
      status(e.message, "error");
    }
  }

  // ------------------------------------------------------------------ rulesets
  async function loadRulesets(selectId) {
    const select = $("ruleset-select");
    let rulesets = [];
    try {
      rulesets = await pageAll("/ruleset", {});
    } catch (e) {
      status(e.message, "error");
    }
    select.replaceChildren(el("option", { value: "" }, "(no ruleset)"));
    rulesetNames.clear();
    rulesets.forEach((r) => {
      rulesetNames.set(r.id, r.name);
      select.append(el("option", { value: String(r.id) }, r.name + " (#" + r.id + ")"));
    });
    if (selectId !== undefined) select.value = String(selectId);
  }

  async function createRuleset() {
    const name = $("new-ruleset-name").value.trim();
    if (!name) { status("Type a name for the new ruleset", "error"); return; }
    if (!state.auth) { status("Log in to create a ruleset", "error"); return; }
    try {
      const created = await request("POST", api("/ruleset"), { name });
      $("new-ruleset-name").value = "";
      await loadRulesets(created.id);
      status("Ruleset " + created.name + " created", "ok");
    } catch (e) {
      status(e.message, "error");
    }
  }

  // ------------------------------------------------------------------ save
  function filterFields() {
    // basisOfRecord (ticked, or all except the ticked), yearRange ("a,b", "*,b", "a,*") and datasetKey
    const bor = Array.from(document.querySelectorAll("#bor-options input:checked")).map((c) => c.value);
    const from = $("year-from").value.trim();
    const to = $("year-to").value.trim();
    if (from && to && parseInt(from, 10) > parseInt(to, 10)) {
      throw new Error("the year range starts after it ends (" + from + " to " + to + ")");
    }
    if ($("bor-negated").checked && !bor.length) {
      throw new Error("“all except” needs at least one ticked basis of record");
    }
    return {
      basisOfRecord: bor.length ? bor : null,
      basisOfRecordNegated: Boolean(bor.length && $("bor-negated").checked),
      yearRange: from || to ? (from || "*") + "," + (to || "*") : null,
      datasetKey: $("dataset-key").value.trim() || null,
    };
  }

  async function saveRule() {
    if (!(state.draftWkt && state.auth)) return;
    let filters;
    try {
      filters = filterFields();
    } catch (e) {
      status("Not saved: " + e.message, "error");
      return;
    }
    if (!state.taxon && !window.confirm(
      "This rule has no taxon: it flags records of EVERY species in the area" +
      (filters.datasetKey ? " (of that dataset)" : "") + ". Save it anyway?")) {
      status("Not saved: choose a taxon, or confirm a rule for every species.", "error");
      return;
    }
    const rulesetId = $("ruleset-select").value;
    const body = {
      taxonKey: state.taxon ? state.taxon.key : null,
      geometry: state.draftWkt,
      annotation: $("label-select").value,
      ...filters,
      rulesetId: rulesetId ? parseInt(rulesetId, 10) : null,
    };
    try {
      const rule = await request("POST", api("/rule"), body);
      status("Saved rule #" + rule.id, "ok");
      state.draftWkt = null;
      state.selectedRuleId = rule.id;
      drawDraft();
      $("draft-info").textContent = "Saved. Draw or pick another area for the next rule.";
      await loadRules(false);
      await loadComments();
    } catch (e) {
      status("Not saved: " + e.message, "error");
      if (e.status === 409 && e.data && state.rules.some((r) => r.id === e.data.id)) {
        state.selectedRuleId = e.data.id;  // show the identical rule: support it instead
        renderRules(false);
        await loadComments();
      }
    }
  }


  // ------------------------------------------------------------------ preview
  // While the rule is drawn, the service says what it would flag in the training sets' snapshots
  // (POST …/rule/preview). Debounced; an answer to an older draft is dropped. Everything shown comes
  // from the snapshots (dataset titles, species names, URLs): it goes in as text or checked attributes.
  let previewTimer = null;
  let previewSeq = 0;
  const PREVIEW_DELAY_MS = 400;

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(runPreview, PREVIEW_DELAY_MS);
  }

  function chosenTrainingSets() {
    const boxes = Array.from(document.querySelectorAll("#preview-sets input"));
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    $("preview-sets-summary").textContent = !boxes.length ? "none has a snapshot yet"
      : chosen.length === boxes.length ? "all (" + boxes.length + ")" : chosen.length + " of " + boxes.length;
    return chosen.length === boxes.length ? null : chosen;
  }

  async function loadTrainingSets() {
    let sets = [];
    try {
      sets = await request("GET", "/ui/api/preview/training-sets");
    } catch (e) {
      $("preview-summary").textContent = "Preview unavailable: " + e.message;
      return;
    }
    const box = $("preview-sets");
    box.replaceChildren();
    sets.forEach((s) => {
      const input = el("input", { type: "checkbox", value: s.trainingSet, checked: true });
      input.addEventListener("change", schedulePreview);
      box.append(el("label", { class: "check", title: "snapshot " + s.snapshotId },
        input, s.trainingSet + (s.rows !== null && s.rows !== undefined ? " (" + Number(s.rows).toLocaleString("en") + ")" : "")));
    });
    chosenTrainingSets();
  }

  function countRows(tbody, rows, label) {
    tbody.replaceChildren();
    rows.slice(0, 10).forEach((r) => {
      tbody.append(el("tr", {}, el("td", { title: label(r).title || "" }, label(r).text),
        el("td", {}, r.occurrences.toLocaleString("en")), el("td", {}, r.images.toLocaleString("en"))));
    });
    if (rows.length > 10) {
      const rest = rows.slice(10);
      const sum = (k) => rest.reduce((a, r) => a + r[k], 0).toLocaleString("en");
      tbody.append(el("tr", { class: "muted" }, el("td", {}, rest.length + " more"), el("td", {}, sum("occurrences")), el("td", {}, sum("images"))));
    }
  }

  function renderPreview(answer) {
    const summary = $("preview-summary");
    const sets = answer.trainingSets.length;
    summary.className = "small ok";
    summary.textContent = answer.message ? answer.message
      : "Would flag " + answer.flagged.occurrences.toLocaleString("en") + " occurrences (" +
        answer.flagged.images.toLocaleString("en") + " images) in " + sets + " training set" + (sets === 1 ? "" : "s") + ".";
    const datasets = $("preview-datasets");
    countRows(datasets.tBodies[0], answer.byDataset, (r) => ({
      text: r.datasetTitle || r.datasetKey || "(no dataset)", title: r.datasetKey || "" }));
    datasets.hidden = !answer.byDataset.length;
    const bor = $("preview-bor");
    countRows(bor.tBodies[0], answer.byBasisOfRecord, (r) => ({ text: r.basisOfRecord || "(none)" }));
    bor.hidden = !answer.byBasisOfRecord.length;
    const strip = $("preview-samples");
    strip.replaceChildren();
    answer.samples.forEach((s) => {
      const caption = [s.species, s.datasetTitle || s.datasetKey, s.year].filter((v) => v !== null && v !== undefined && v !== "").join(" · ");
      const img = el("img", { alt: s.species || "sample image", loading: "lazy" });
      img.addEventListener("error", () => img.classList.add("broken"));
      // only this service's own thumbnail paths (the CSP allows images from here only)
      if (typeof s.thumbnail === "string" && /^\/ui\/api\/preview\/thumbnail\/[0-9a-f]+$/.test(s.thumbnail)) img.src = s.thumbnail;
      const link = el("a", { class: "sample", title: caption + " (gbifID " + s.gbifID + ")", dataset: { gbifId: String(s.gbifID) } }, img);
      if (typeof s.identifier === "string" && /^https?:\/\//i.test(s.identifier)) {
        link.href = s.identifier;  // http(s) only: never a javascript: URL from a snapshot
        link.target = "_blank";
        link.rel = "noopener noreferrer";
      }
      strip.append(link);
    });
    document.body.dataset.previewSeq = String(previewSeq);
  }

  function clearPreview(text) {
    $("preview-summary").textContent = text;
    $("preview-summary").className = "muted small";
    $("preview-datasets").hidden = true;
    $("preview-bor").hidden = true;
    $("preview-samples").replaceChildren();
  }

  async function runPreview() {
    const seq = ++previewSeq;
    if (!state.draftWkt) {
      clearPreview("Draw a polygon or pick a country to see what the rule would flag.");
      return;
    }
    let filters;
    try {
      filters = filterFields();
    } catch (e) {
      clearPreview("No preview: " + e.message);
      return;
    }
    const body = { taxonKey: state.taxon ? state.taxon.key : null, geometry: state.draftWkt, ...filters };
    $("preview").dataset.geometry = state.draftWkt;
    const sets = chosenTrainingSets();
    if (sets) body.trainingSets = sets;
    $("preview-summary").textContent = "Counting …";
    $("preview-summary").className = "muted small";
    try {
      const answer = await request("POST", api("/rule/preview"), body);
      if (seq === previewSeq) renderPreview(answer);
    } catch (e) {
      if (seq === previewSeq) {
        clearPreview("No preview: " + e.message);
        $("preview-summary").className = "small error";
      }
    }
  }

  // ------------------------------------------------------------------ start
  async function start() {
    state.config = await request("GET", "/ui/api/config");
    const select = $("label-select");
    const legend = $("legend");
    state.config.labels.forEach((t) => {
      select.append(el("option", { value: t.term, title: t.description }, t.term));
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = t.color;
      legend.append(el("span", { class: "legend-item" }, swatch, t.term));
    });
    select.value = "SUSPICIOUS";
    const borBox = $("bor-options");
    (state.config.basisOfRecord || []).forEach((name) => {
      const text = name.charAt(0) + name.slice(1).toLowerCase().replace(/_/g, " ");
      borBox.append(el("label", { class: "check" }, el("input", { type: "checkbox", value: name }), text));
    });
    initMap();
    $("login-form").addEventListener("submit", login);
    $("logout-button").addEventListener("click", logout);
    $("taxon-form").addEventListener("submit", searchTaxa);
    $("taxon-clear").addEventListener("click", clearTaxon);
    $("mode-draw").addEventListener("click", () => setMode("draw"));
    $("mode-country").addEventListener("click", () => setMode("country"));
    $("finish-draw").addEventListener("click", finishDraw);
    $("clear-draft").addEventListener("click", clearDraft);
    $("save-rule").addEventListener("click", saveRule);
    $("support-button").addEventListener("click", () => vote("support"));
    $("contest-button").addEventListener("click", () => vote("contest"));
    $("delete-rule-button").addEventListener("click", deleteRule);
    $("comment-add").addEventListener("click", addComment);
    $("new-ruleset").addEventListener("click", createRuleset);
    ["year-from", "year-to", "dataset-key", "bor-negated"].forEach((id) => $(id).addEventListener("input", schedulePreview));
    $("bor-negated").addEventListener("change", schedulePreview);
    $("bor-options").addEventListener("change", schedulePreview);
    showLogin();
    await Promise.all([loadBasemap(), loadRulesets(), loadTrainingSets()]);
    const m = /taxon=(\d+)/.exec(location.hash);
    if (!m) await loadRules(false);
    if (m) {
      const key = parseInt(m[1], 10);
      await chooseTaxon({ key, name: "taxon " + key });
      try {  // the name is a nicety: rules show even when GBIF cannot be reached
        const found = await request("GET", "/ui/api/taxa?q=" + key);
        if (found.length) {
          state.taxon.name = found[0].scientificName || state.taxon.name;
          state.taxonNames.set(key, state.taxon.name);
          $("taxon-selected").textContent = "Chosen: " + state.taxon.name + " (" + key + ")";
        }
      } catch (e) { /* keep the key */ }
    }
    document.body.dataset.ready = "true";
  }

  start().catch((e) => status("The page could not start: " + e.message, "error"));
})();
