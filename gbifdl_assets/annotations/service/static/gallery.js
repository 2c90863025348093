/*
 * The gallery page: a training set's stored images per class; click one to flag it.
 *
 * Everything the page shows is data (names, URLs, creators from GBIF records): it is only ever put
 * into the page as text (textContent, createTextNode) or as attributes the browser does not run, and
 * never through innerHTML. No inline handlers (the CSP forbids inline script). Credentials live in
 * sessionStorage (this tab only, shared with the map page) and go out only as an Authorization header
 * on same-origin requests; writes are JSON (the service refuses anything else).
 */
(function () {
  "use strict";

  const PAGE = 60;
  const state = {
    auth: sessionStorage.getItem("gbifdl-auth"),
    user: sessionStorage.getItem("gbifdl-user"),
    config: null, terms: [], trainingSet: null, label: null, offset: 0, total: 0, current: null,
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

  function status(message, kind) {
    $("status").textContent = message || "";
    $("status").className = kind || "";
  }

  function utf8Base64(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin);
  }

  async function request(method, path, body, authOverride) {
    const headers = { "Accept": "application/json" };
    const auth = authOverride || state.auth;
    if (auth) headers["Authorization"] = "Basic " + auth;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = { message: text }; }
    }
    if (!response.ok) {
      const error = new Error((data && data.message) || (response.status + " " + response.statusText));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ------------------------------------------------------------------ login (as the map page)
  function showLogin() {
    const loggedIn = Boolean(state.auth && state.user);
    $("login-form").hidden = loggedIn;
    $("logged-in").hidden = !loggedIn;
    $("login-status").textContent = loggedIn ? "Logged in as " + state.user : "";
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
    } catch (error) {
      status("Login failed: " + error.message, "error");
    }
    showLogin();
  }

  function logout() {
    state.auth = null;
    state.user = null;
    sessionStorage.removeItem("gbifdl-auth");
    sessionStorage.removeItem("gbifdl-user");
    showLogin();
  }

  // ------------------------------------------------------------------ data
  const colour = (term) => (state.terms.find((t) => t.term === term) || { color: "#6b7280" }).color;

  async function loadTrainingSets() {
    let sets = [];
    try {
      sets = await request("GET", "/ui/api/gallery");
    } catch (error) {
      status(error.message, "error");
      return;
    }
    const select = $("training-set");
    select.replaceChildren(...sets.map((name) => el("option", { value: name }, name)));
    if (!sets.length) {
      status("No training set has a manifest in this data storage yet.", "error");
      return;
    }
    state.trainingSet = sets[0];
    await loadPage();
  }

  async function loadPage() {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
    if (state.label !== null) params.set("label", String(state.label));
    let page;
    try {
      page = await request("GET", "/ui/api/gallery/" + encodeURIComponent(state.trainingSet) + "?" + params);
    } catch (error) {
      status(error.message, "error");
      return;
    }
    state.label = page.label;
    state.total = page.total;
    renderClasses(page.classes);
    renderGrid(page.images);
    const last = Math.min(state.offset + PAGE, state.total);
    $("page-info").textContent = state.total ? (state.offset + 1) + "–" + last + " of " + state.total : "no images";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= state.total;
    document.body.dataset.ready = "true";
  }

  function renderClasses(classes) {
    $("classes").replaceChildren(...classes.map((c) => {
      const li = el("li", { class: c.label === state.label ? "selected" : "", dataset: { label: String(c.label) } },
        el("span", {}, c.name || String(c.label)), el("span", { class: "muted small" }, " (" + c.images + ")"));
      li.addEventListener("click", () => {
        state.label = c.label;
        state.offset = 0;
        loadPage();
      });
      return li;
    }));
  }

  function renderGrid(images) {
    $("grid").replaceChildren(...images.map((image) => {
      const card = el("div", { class: "card" + (image.flags.length ? " flagged" : ""),
                               dataset: { gbifId: String(image.gbifID) } });
      if (image.thumbnail) {
        const button = el("button", { type: "button", class: "thumb", title: "Flag this image" },
          el("img", { src: image.thumbnail, alt: image.labelName || "image", loading: "lazy" }));
        button.addEventListener("click", () => openFlag(image));
        card.append(button);
      } else {
        card.append(el("div", { class: "missing" }, "not stored yet"));
      }
      const meta = el("div", { class: "meta" },
        el("div", {}, "occurrence " + image.gbifID + " · " + image.split),
        el("div", { class: "muted" }, image.creator ? "© " + image.creator : image.license));
      image.flags.forEach((f) => {
        const badge = el("span", { class: "badge" }, f.flag);
        badge.style.background = colour(f.flag);
        meta.append(badge);
      });
      card.append(meta);
      return card;
    }));
  }

  // ------------------------------------------------------------------ flagging
  function openFlag(image) {
    state.current = image;
    $("flag-image").src = image.thumbnail;
    $("flag-image").alt = image.labelName || "image";
    const facts = [["occurrence", String(image.gbifID)], ["class", image.labelName || String(image.label)],
                   ["URL", image.url], ["licence", image.license || ""]];
    $("flag-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    $("flag-terms").replaceChildren(el("legend", {}, "What is wrong with it?"), ...state.terms.map((t, i) =>
      el("label", {}, el("input", { type: "radio", name: "flag-term", value: t.term, checked: i === 0 }),
        " " + t.term + " — ", el("span", { class: "muted" }, t.description))));
    $("flag-comment").value = "";
    $("flag-why").textContent = state.auth ? "" : "Log in first: flags need a user.";
    $("flag-save").disabled = !state.auth;
    $("flag-dialog").showModal();
  }

  async function saveFlag(event) {
    event.preventDefault();
    const image = state.current;
    const chosen = document.querySelector("input[name=flag-term]:checked");
    if (!image || !chosen) return;
    const body = { gbifID: image.gbifID, mediaIdentifier: image.url, flag: chosen.value, taxonKey: image.label };
    if (image.contentSha256) body.contentSha256 = image.contentSha256;
    const comment = $("flag-comment").value.trim();
    if (comment) body.comment = comment;
    try {
      const flag = await request("POST", state.config.apiPrefix + "/image-flag", body);
      status("Flagged occurrence " + flag.gbifID + " as " + flag.flag + " (flag " + flag.id + ")", "ok");
      $("flag-dialog").close();
      await loadPage();
    } catch (error) {
      $("flag-why").textContent = error.message;
      status("Not saved: " + error.message, "error");
    }
  }

  async function start() {
    $("login-form").addEventListener("submit", login);
    $("logout-button").addEventListener("click", logout);
    $("flag-form").addEventListener("submit", saveFlag);
    $("flag-cancel").addEventListener("click", () => $("flag-dialog").close());
    $("training-set").addEventListener("change", () => {
      state.trainingSet = $("training-set").value;
      state.label = null;
      state.offset = 0;
      loadPage();
    });
    $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadPage(); });
    $("next").addEventListener("click", () => { state.offset += PAGE; loadPage(); });
    showLogin();
    state.config = await request("GET", "/ui/api/config");
    state.terms = await request("GET", state.config.apiPrefix + "/image-flag/vocabulary");
    await loadTrainingSets();
  }

  start().catch((error) => status(error.message, "error"));
})();
