/* b24app settings page.
 *
 * The page lives in Bitrix24's iframe, where there are no cookies: every request carries the
 * page token from the embedded state in the X-Page-Token header (it is also the CSRF guard).
 * No inline script or style anywhere (the page's CSP allows only this file and BX24.js), and
 * text from Bitrix24 or the PBX is only ever set as textContent.
 * After every render the iframe is fitted to the content with BX24.fitWindow(), when BX24.js
 * is there (it is not when the page is opened outside Bitrix24).
 */
(function () {
  "use strict";

  var S = JSON.parse(document.getElementById("b24app-state").textContent);
  var M = S.messages;
  var isAdmin = !!(S.viewer && S.viewer.is_admin);
  var employees = null; // {id: {id, name, extension}} once loaded
  var employeeList = [];
  var revealedKey = null;
  var revealedSecret = null;
  var originationRows = null;
  var journalShow = "all";

  // --- small helpers --------------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  function t(key, vars) {
    var text = M[key] || key;
    Object.keys(vars || {}).forEach(function (name) {
      text = text.split("%(" + name + ")s").join(String(vars[name]));
    });
    return text;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "className") node.className = attrs[name];
      else if (attrs[name] === true) node.setAttribute(name, "");
      else if (attrs[name] !== false && attrs[name] != null) node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) {
      if (child != null) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function fit() {
    if (window.BX24 && typeof window.BX24.fitWindow === "function") {
      try { window.BX24.fitWindow(); } catch (ignored) { /* outside Bitrix24 */ }
    }
  }

  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    headers[S.token_header] = S.token;
    var options = { method: method, headers: headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(S.api + path, options).then(function (response) {
      return response.text().then(function (text) {
        var data;
        try { data = JSON.parse(text); } catch (notJson) { data = { raw: text }; }
        return { ok: response.ok, status: response.status, data: data };
      });
    }, function () {
      return { ok: false, status: 0, data: { error: { code: "network", message: M.network } } };
    });
  }

  function flash(text, isError) {
    var box = $("flash");
    box.textContent = text;
    box.classList.toggle("is-error", !!isError);
    box.hidden = !text;
    fit();
  }

  function clearErrors(scope) {
    (scope || document).querySelectorAll(".field-error").forEach(function (node) {
      node.hidden = true;
      node.textContent = "";
    });
    (scope || document).querySelectorAll("[aria-invalid]").forEach(function (node) {
      node.removeAttribute("aria-invalid");
    });
  }

  /* Show an API failure: field errors next to their fields, anything else in the flash. */
  function showFailure(result, scope) {
    clearErrors(scope);
    var data = result.data || {};
    if (data.errors && data.errors.length) {
      var unplaced = [];
      data.errors.forEach(function (error) {
        var box = (scope || document).querySelector("#" + CSS.escape(error.field + "-error"));
        if (!box) { unplaced.push(error.message); return; }
        box.textContent = error.message;
        box.hidden = false;
        var control = (scope || document).querySelector("[aria-describedby~='" + box.id + "']");
        if (control) { control.setAttribute("aria-invalid", "true"); control.focus(); }
      });
      flash(unplaced.join(" ") || data.errors[0].message, true);
      return;
    }
    var message = data.error && data.error.message;
    flash(message || t("error", { error: result.status }), true);
  }

  function copyFrom(id) {
    var node = $(id);
    var text = node.value !== undefined && node.tagName === "INPUT" ? node.value : node.textContent;
    function fallback() {
      var range = document.createRange();
      if (node.tagName === "INPUT") { node.select(); } else {
        range.selectNodeContents(node);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      var done = false;
      try { done = document.execCommand("copy"); } catch (ignored) { done = false; }
      flash(done ? M.copied : M.copy_failed, !done);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { flash(M.copied); }, fallback);
    } else {
      fallback();
    }
  }

  function employeeName(userId) {
    if (!userId) return "";
    var found = employees && employees[userId];
    if (found) return (found.name || t("user", { id: userId })) + " (#" + userId + ")";
    return employees ? t("unknown_user", { id: userId }) : t("user", { id: userId });
  }

  // --- health ---------------------------------------------------------------------------------

  function renderHealth(health) {
    if (!health) return;
    $("health-badge").dataset.status = health.status;
    $("health-badge").textContent = health.status_label;
    $("health-status").textContent = health.status_text;
    $("health-action").textContent = health.action;
    $("health-last").textContent = health.last_delivered_at || "—";
    $("health-queued").textContent = String(health.queued);
    $("health-failed").textContent = String(health.failed_24h);
    if ($("reauth-box")) $("reauth-box").hidden = !health.can_reauthorize;
  }

  function wireReauth() {
    var button = $("reauth-make");
    if (!button) return;
    button.addEventListener("click", function () {
      api("POST", "/reauthorize", {}).then(function (result) {
        if (!result.ok) { showFailure(result); return; }
        var link = $("reauth-link");
        link.href = result.data.url;
        link.hidden = false;
        link.focus();
        fit();
      });
    });
  }

  // --- PBX connection -------------------------------------------------------------------------

  function renderExamples() {
    if (!S.examples) return;
    ["curl", "asterisk"].forEach(function (name) {
      var text = S.examples[name];
      if (revealedKey) text = text.split(S.key_placeholder).join(revealedKey);
      $("example-" + name).textContent = text;
    });
  }

  function showKey(key) {
    revealedKey = key;
    var input = $("pbx-key");
    input.type = "text";
    input.value = key;
    $("key-copy").disabled = false;
    $("key-show").textContent = M.hide;
    renderExamples();
    fit();
  }

  function hideKey() {
    revealedKey = null;
    var input = $("pbx-key");
    input.type = "password";
    input.value = "••••••••••••••••";
    $("key-copy").disabled = true;
    $("key-show").textContent = M.show;
    renderExamples();
  }

  function wireConnection() {
    if (!$("key-show")) return;
    $("key-show").addEventListener("click", function () {
      if (revealedKey) { hideKey(); return; }
      api("POST", "/pbx-key/reveal", {}).then(function (result) {
        if (!result.ok) { showFailure(result); return; }
        showKey(result.data.key);
      });
    });
    var confirmBox = $("rotate-confirm");
    function closeConfirm() {
      confirmBox.hidden = true;
      $("key-rotate").setAttribute("aria-expanded", "false");
      fit();
    }
    $("key-rotate").addEventListener("click", function () {
      confirmBox.hidden = false;
      $("key-rotate").setAttribute("aria-expanded", "true");
      $("rotate-yes").focus();
      fit();
    });
    $("rotate-no").addEventListener("click", function () { closeConfirm(); $("key-rotate").focus(); });
    confirmBox.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { closeConfirm(); $("key-rotate").focus(); }
    });
    $("rotate-yes").addEventListener("click", function () {
      api("POST", "/pbx-key/rotate", { confirm: true }).then(function (result) {
        closeConfirm();
        if (!result.ok) { showFailure(result); return; }
        showKey(result.data.key);
        $("key-rotated-at").textContent = result.data.key_rotated_at || "";
        flash(M.key_rotated);
        $("pbx-key").focus();
      });
    });
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copyFrom(button.getAttribute("data-copy")); });
    });
    wireTabs();
  }

  function wireTabs() {
    var tabs = Array.prototype.slice.call(document.querySelectorAll("[role='tab']"));
    function select(tab) {
      tabs.forEach(function (other) {
        var selected = other === tab;
        other.setAttribute("aria-selected", selected ? "true" : "false");
        other.tabIndex = selected ? 0 : -1;
        $(other.getAttribute("aria-controls")).hidden = !selected;
      });
      tab.focus();
      fit();
    }
    tabs.forEach(function (tab, index) {
      tab.addEventListener("click", function () { select(tab); });
      tab.addEventListener("keydown", function (event) {
        if (event.key === "ArrowRight") select(tabs[(index + 1) % tabs.length]);
        if (event.key === "ArrowLeft") select(tabs[(index + tabs.length - 1) % tabs.length]);
      });
    });
  }

  // --- click-to-call and callback -------------------------------------------------------------

  function showSecret(secret) {
    revealedSecret = secret;
    var input = $("originate-secret");
    input.type = "text";
    input.value = secret;
    $("secret-copy").disabled = false;
    $("secret-show").textContent = M.hide;
    fit();
  }

  function hideSecret() {
    revealedSecret = null;
    var input = $("originate-secret");
    input.type = "password";
    input.value = "••••••••••••••••";
    $("secret-copy").disabled = true;
    $("secret-show").textContent = M.show;
  }

  function wireOriginate() {
    if (!isAdmin || !$("originate-form")) return;
    var form = $("originate-form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      $("originate-save").disabled = true;
      api("POST", "/settings", { settings: { originate_url: $("originate_url").value } }).then(function (result) {
        $("originate-save").disabled = false;
        if (!result.ok) { showFailure(result, form); return; }
        clearErrors(form);
        S.settings = result.data.settings;
        S.originate = result.data.originate;
        $("originate_url").value = S.originate.url;
        flash(M.saved);
      });
    });
    $("secret-show").addEventListener("click", function () {
      if (revealedSecret) { hideSecret(); return; }
      api("POST", "/originate-secret/reveal", {}).then(function (result) {
        if (!result.ok) { showFailure(result); return; }
        showSecret(result.data.secret);
      });
    });
    var confirmBox = $("secret-confirm"), opener = $("secret-rotate");
    function closeConfirm() {
      confirmBox.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      fit();
    }
    opener.addEventListener("click", function () {
      confirmBox.hidden = false;
      opener.setAttribute("aria-expanded", "true");
      $("secret-yes").focus();
      fit();
    });
    $("secret-no").addEventListener("click", function () { closeConfirm(); opener.focus(); });
    confirmBox.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { closeConfirm(); opener.focus(); }
    });
    $("secret-yes").addEventListener("click", function () {
      api("POST", "/originate-secret/rotate", { confirm: true }).then(function (result) {
        closeConfirm();
        if (!result.ok) { showFailure(result); return; }
        showSecret(result.data.secret);
        flash(M.secret_rotated);
        $("originate-secret").focus();
      });
    });
    wireTestCall();
  }

  function wireTestCall() {
    var form = $("test-call-form");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = $("test-call-send"), box = $("test-answer");
      button.disabled = true;
      box.hidden = false;
      box.dataset.state = "sending";
      $("test-answer-text").textContent = M.sending_test;
      $("test-answer-details").hidden = true;
      fit();
      api("POST", "/originate/test", { phone_number: $("test_phone_number").value }).then(function (result) {
        button.disabled = false;
        if (!result.ok) { box.hidden = true; showFailure(result, form); return; }
        clearErrors(form);
        var answer = result.data.answer;
        box.dataset.state = answer.ok ? "ok" : "failed";
        $("test-answer-text").textContent = answer.text;
        $("test-answer-body").textContent = answer.body || "";
        $("test-answer-details").hidden = !answer.body;
        fit();
      });
    });
  }

  // --- external lines -------------------------------------------------------------------------

  function renderLines(lines) {
    var body = $("lines-rows");
    body.textContent = "";
    lines.forEach(function (line) {
      body.appendChild(el("tr", { "data-line": line.NUMBER }, [
        el("th", { scope: "row", text: line.NUMBER }), el("td", { text: line.NAME || "—" })
      ]));
    });
    $("lines-state").textContent = lines.length ? "" : M.no_lines;
    $("lines-state").hidden = !!lines.length;
    $("lines-state").classList.remove("field-error");
    fit();
  }

  function loadLines() {
    if (!$("lines-rows")) return;
    api("GET", "/lines").then(function (result) {
      if (!result.ok) {
        var message = result.data && result.data.error ? result.data.error.message : result.status;
        $("lines-state").textContent = t("lines_failed", { error: message });
        $("lines-state").classList.add("field-error");
        $("lines-state").hidden = false;
        fit();
        return;
      }
      renderLines(result.data.lines);
    });
  }

  function wireLines() {
    var form = $("line-add");
    if (!isAdmin || !form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      $("line-add-save").disabled = true;
      api("POST", "/lines", { NUMBER: $("line_number").value, NAME: $("line_name").value }).then(function (result) {
        $("line-add-save").disabled = false;
        if (!result.ok) { showFailure(result, form); return; }
        clearErrors(form);
        renderLines(result.data.lines);
        $("line_number").value = "";
        $("line_name").value = "";
        flash(result.data.message, !result.data.added);
        $("line_number").focus();
      });
    });
  }

  // --- requests to the PBX --------------------------------------------------------------------

  function loadOriginations() {
    if (!$("originations-rows")) return;
    api("GET", "/originations").then(function (result) {
      if (!result.ok) { showFailure(result); return; }
      originationRows = result.data.originations;
      renderOriginations();
    });
  }

  function renderOriginations() {
    var body = $("originations-rows");
    if (!body || !originationRows) return;
    body.textContent = "";
    if (!originationRows.length) body.appendChild(el("tr", {}, [el("td", { colspan: "5", text: M.no_originations })]));
    originationRows.forEach(function (row) { body.appendChild(originationRow(row)); });
    fit();
  }

  function originationRow(row) {
    var who = row.user_id ? employeeName(row.user_id) : "";
    var employeeCell = el("td", {}, [who || row.extension || "—"]);
    if (who && row.extension) employeeCell.appendChild(el("span", { className: "sub", text: row.extension }));
    var kindCell = el("td", {}, [row.kind_text, row.line_number ? el("span", { className: "sub", text: t("line", { line: row.line_number }) }) : null]);
    if (row.text) kindCell.appendChild(el("span", { className: "sub", text: t("callback_text", { text: row.text }) }));
    var details = [el("li", { text: t("attempts", { count: row.attempts }) })];
    if (row.call_id) details.push(el("li", { text: t("bitrix_call", { id: row.call_id }) }));
    if (row.response_body) details.push(el("li", {}, [el("pre", { className: "code", text: row.response_body })]));
    var outcome = el("td", { className: "delivery" }, [
      stateBadge(row.state, row.state_text), " ", row.outcome,
      el("details", { className: "answer" }, [el("summary", { text: row.response_body ? M.pbx_body : M.delivery_details }), el("ul", {}, details)])
    ]);
    return el("tr", { "data-origination": String(row.id), "data-state": row.state, "data-kind": row.kind }, [
      el("td", { text: row.created_at || "" }), kindCell, el("td", { text: row.phone_number || "—" }), employeeCell, outcome
    ]);
  }

  function wireOriginations() {
    if (!$("originations-refresh")) return;
    $("originations-refresh").addEventListener("click", loadOriginations);
  }

  // --- defaults -------------------------------------------------------------------------------

  function fillEmployeeSelect(select, chosen, emptyText) {
    var keep = chosen != null ? String(chosen) : select.value;
    select.textContent = "";
    select.appendChild(el("option", { value: "", text: emptyText }));
    employeeList.forEach(function (employee) {
      select.appendChild(el("option", { value: String(employee.id), text: employeeName(employee.id) }));
    });
    if (keep && !(employees && employees[keep])) {
      select.appendChild(el("option", { value: keep, text: employeeName(Number(keep)) }));
    }
    select.value = keep || "";
  }

  function wireDefaults() {
    var form = $("defaults-form");
    if (!isAdmin) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var wanted = {
        currency: $("currency").value,
        add_to_chat: $("add_to_chat").checked,
        fallback_user_id: $("fallback_user_id").value,
        timezone: $("timezone").value,
        show_card: $("show_card").checked
      };
      var changes = {};
      Object.keys(wanted).forEach(function (name) {
        var now = S.settings[name];
        var normal = name === "fallback_user_id" ? String(now || "") : now;
        if (name === "currency") normal = now || "";
        if (wanted[name] !== normal) changes[name] = wanted[name];
      });
      if (!Object.keys(changes).length) { clearErrors(form); flash(M.saved); return; }
      $("defaults-save").disabled = true;
      api("POST", "/settings", { settings: changes }).then(function (result) {
        $("defaults-save").disabled = false;
        if (!result.ok) { showFailure(result, form); return; }
        clearErrors(form);
        S.settings = result.data.settings;
        S.currencies = result.data.currencies;
        renderHealth(result.data.health);
        flash(M.saved);
      });
    });
  }

  // --- extensions -----------------------------------------------------------------------------

  function matches(row, query) {
    if (!query) return true;
    var haystack = (row.extension + " " + employeeName(row.user_id)).toLowerCase();
    return haystack.indexOf(query.toLowerCase()) !== -1;
  }

  function renderMapping() {
    var body = $("mapping-rows");
    var query = $("mapping-search").value.trim();
    var rows = S.mapping.filter(function (row) { return matches(row, query); });
    var columns = isAdmin ? 3 : 2;
    body.textContent = "";
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: columns, text: S.mapping.length ? M.no_match : M.no_mapping })]));
    }
    rows.forEach(function (row) { body.appendChild(mappingRow(row)); });
    fit();
  }

  function mappingRow(row) {
    var employee = employees && employees[row.user_id];
    var who = el("td", {}, [employeeName(row.user_id)]);
    if (employee && employee.extension && employee.extension !== row.extension) {
      who.appendChild(el("span", { className: "sub", text: t("profile_extension", { ext: employee.extension }) }));
    }
    var cells = [el("th", { scope: "row", text: row.extension }), who];
    if (isAdmin) {
      var label = t("mapping_for", { ext: row.extension });
      var change = el("button", { type: "button", className: "btn btn-small", "aria-label": M.edit + ": " + label, text: M.edit });
      var remove = el("button", { type: "button", className: "btn btn-small btn-danger-outline", "aria-label": M.remove + ": " + label, text: M.remove });
      change.addEventListener("click", function () { editRow(tr, row); });
      remove.addEventListener("click", function () { removeRow(row); });
      cells.push(el("td", { className: "actions-cell" }, [change, remove]));
    }
    var tr = el("tr", { "data-extension": row.extension }, cells);
    return tr;
  }

  function editRow(tr, row) {
    var id = "edit-" + Math.random().toString(36).slice(2, 8);
    var ext = el("input", { type: "text", id: id + "-ext", value: row.extension, maxlength: "32", "aria-label": M.extension, "aria-describedby": "edit-extension-error" });
    var select = el("select", { id: id + "-user", "aria-label": M.employee, "aria-describedby": "edit-user_id-error" });
    fillEmployeeSelect(select, row.user_id, M.employee_choose);
    var save = el("button", { type: "button", className: "btn btn-small btn-primary", text: M.save });
    var cancel = el("button", { type: "button", className: "btn btn-small", text: M.cancel });
    var errors = el("td", { colspan: "3" }, [
      el("p", { className: "field-error", id: "edit-extension-error", hidden: true }),
      el("p", { className: "field-error", id: "edit-user_id-error", hidden: true })
    ]);
    tr.textContent = "";
    tr.appendChild(el("td", {}, [ext]));
    tr.appendChild(el("td", {}, [select]));
    tr.appendChild(el("td", { className: "actions-cell" }, [save, cancel]));
    var errorRow = el("tr", { className: "edit-errors" }, [errors]);
    tr.parentNode.insertBefore(errorRow, tr.nextSibling);
    ext.focus();
    cancel.addEventListener("click", function () { renderMapping(); });
    tr.addEventListener("keydown", function (event) {
      if (event.key === "Escape") renderMapping();
      if (event.key === "Enter" && event.target.tagName !== "BUTTON") { event.preventDefault(); save.click(); }
    });
    save.addEventListener("click", function () {
      var body = { extension: ext.value, user_id: select.value, replaces: row.extension };
      api("POST", "/mapping", body).then(function (result) {
        if (!result.ok) {
          var data = result.data || {};
          (data.errors || []).forEach(function (error) { error.field = "edit-" + error.field; });
          showFailure(result, errorRow.parentNode);
          return;
        }
        S.mapping = result.data.mapping;
        renderMapping();
        flash(t("mapped", { ext: body.extension.trim(), name: employeeName(Number(body.user_id)) }));
      });
    });
    fit();
  }

  function removeRow(row) {
    api("POST", "/mapping/remove", { extension: row.extension }).then(function (result) {
      if (!result.ok) { showFailure(result); return; }
      S.mapping = result.data.mapping;
      renderMapping();
      flash(t("removed", { ext: row.extension }));
      $("mapping-search").focus();
    });
  }

  function wireMapping() {
    $("mapping-search").addEventListener("input", renderMapping);
    $("export-csv").addEventListener("click", function () {
      var headers = {};
      headers[S.token_header] = S.token;
      fetch(S.api + "/mapping/export", { headers: headers, credentials: "omit", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.blob();
        })
        .then(function (blob) {
          var link = el("a", { href: URL.createObjectURL(blob), download: "extensions.csv" });
          document.body.appendChild(link);
          link.click();
          setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
        }, function () { flash(M.network, true); });
    });
    if (!isAdmin) return;
    var addForm = $("mapping-add");
    addForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { extension: $("add-extension").value, user_id: $("add-user").value };
      api("POST", "/mapping", body).then(function (result) {
        if (!result.ok) { showFailure(result, addForm); return; }
        clearErrors(addForm);
        S.mapping = result.data.mapping;
        $("add-extension").value = "";
        $("add-user").value = "";
        renderMapping();
        flash(t("mapped", { ext: body.extension.trim(), name: employeeName(Number(body.user_id)) }));
        $("add-extension").focus();
      });
    });
    $("from-profiles").addEventListener("click", function () {
      $("from-profiles").disabled = true;
      api("POST", "/mapping/from-profiles", {}).then(function (result) {
        $("from-profiles").disabled = false;
        if (!result.ok) { showFailure(result); return; }
        setEmployees(result.data.employees);
        S.mapping = result.data.mapping;
        renderMapping();
        var text = t("from_profiles", {
          added: result.data.added.length, changed: result.data.changed.length, skipped: result.data.skipped.length
        });
        if (result.data.skipped.length) text += " " + t("profiles_skipped", { list: result.data.skipped.join(", ") });
        flash(text);
      });
    });
    $("import-button").addEventListener("click", function () { $("import-csv").click(); });
    $("import-csv").addEventListener("change", function () {
      var file = $("import-csv").files[0];
      if (!file) return;
      file.text().then(function (text) {
        return api("POST", "/mapping/import", { csv: text });
      }).then(function (result) {
        $("import-csv").value = "";
        if (!result.ok) { showFailure(result); return; }
        clearErrors();
        S.mapping = result.data.mapping;
        renderMapping();
        flash(t("imported", { count: result.data.count }));
      });
    });
  }

  function setEmployees(list) {
    employeeList = list || [];
    employees = {};
    employeeList.forEach(function (employee) { employees[employee.id] = employee; });
    $("employees-state").textContent = employeeList.length ? "" : M.no_employees;
    $("employees-state").hidden = !!employeeList.length;
    fillEmployeeSelect($("fallback_user_id"), S.settings.fallback_user_id, M.no_fallback);
    if ($("add-user")) fillEmployeeSelect($("add-user"), null, M.employee_choose);
  }

  function loadEmployees() {
    return api("GET", "/employees").then(function (result) {
      if (!result.ok) {
        var message = result.data && result.data.error ? result.data.error.message : result.status;
        $("employees-state").textContent = t("employees_failed", { error: message });
        renderMapping();
        return;
      }
      setEmployees(result.data.employees);
      renderMapping();
      if (isAdmin) { renderJournal(); renderOriginations(); }
    });
  }

  // --- journal --------------------------------------------------------------------------------

  var journalCalls = null;
  var openTimelines = {}; // call id -> true while its timeline is open (kept across reloads)

  function loadJournal() {
    if (!$("journal-rows")) return;
    api("GET", "/calls?show=" + encodeURIComponent(journalShow)).then(function (result) {
      if (!result.ok) { showFailure(result); return; }
      journalCalls = result.data.calls;
      renderHealth(result.data.health);
      renderJournal();
    });
  }

  function renderJournal() {
    var body = $("journal-rows");
    if (!body || !journalCalls) return;
    body.textContent = "";
    if (!journalCalls.length) body.appendChild(el("tr", {}, [el("td", { colspan: "5", text: M.no_calls })]));
    journalCalls.forEach(function (call) {
      var timeline = timelineRow(call);
      body.appendChild(journalRow(call, timeline));
      body.appendChild(timeline);
    });
    fit();
  }

  function employeeText(named) {
    if (named.user_id) {
      var who = employeeName(named.user_id);
      return named.extension ? who + " · " + named.extension : who;
    }
    return named.extension || "—";
  }

  function recordingText(recording) {
    var parts = [t("recording", { state: recording.state_text })];
    if (recording.audio) parts.push(recording.audio);
    if (recording.size_text) parts.push(recording.size_text);
    return parts.join(" · ");
  }

  function stateBadge(state, text) {
    return el("span", { className: "state state-" + state, text: text });
  }

  function journalRow(call, timeline) {
    var who = call.employee_id ? employeeName(call.employee_id) : "";
    var employeeCell = el("td", {}, [who || call.extension || "—"]);
    if (who && call.extension) employeeCell.appendChild(el("span", { className: "sub", text: call.extension }));
    var kind = [call.type_text, call.line_number ? t("line", { line: call.line_number }) : ""].filter(Boolean).join(" · ");
    var numberCell = el("td", {}, [call.phone_number || "—", kind ? el("span", { className: "sub", text: kind }) : null]);
    var callCell = el("td", {}, [
      call.duration != null ? t("duration_s", { seconds: call.duration }) : "—",
      call.status_code ? el("span", { className: "sub", text: call.status_code + (call.status_text ? " · " + call.status_text : "") }) : null,
      call.recording ? el("span", { className: "sub recording recording-" + call.recording.state, text: recordingText(call.recording) }) : null
    ]);
    var delivery = el("td", { className: "delivery" }, [stateBadge(call.state, call.state_text), " ", call.outcome]);
    var details = [];
    Object.keys(call.answer || {}).forEach(function (key) {
      details.push(el("li", { text: key + ": " + JSON.stringify(call.answer[key]) }));
    });
    if (call.error) details.push(el("li", { text: call.error }));
    if (call.note) details.push(el("li", { text: call.note }));
    details.push(el("li", { text: t("attempts", { count: call.attempts }) + (call.pbx_call_id ? " · PBX_CALL_ID " + call.pbx_call_id : "") }));
    // "Bitrix24's answer" only when Bitrix24 answered something; else the delivery's own details
    var answered = Object.keys(call.answer || {}).length > 0;
    delivery.appendChild(el("details", { className: "answer" }, [el("summary", { text: answered ? M.answer : M.delivery_details }), el("ul", {}, details)]));
    if (call.can_retry) {
      delivery.appendChild(el("div", {}, [againButton(M.deliver_again, null, "/calls/" + encodeURIComponent(call.id) + "/deliver-again", M.requeued)]));
    }
    var toggle = el("button", {
      type: "button", className: "btn btn-small timeline-toggle", "aria-expanded": timeline.hidden ? "false" : "true",
      "aria-controls": timeline.id, "aria-label": t("timeline_of", { number: call.phone_number || "—", time: call.created_at || "" }),
      text: M.timeline + " (" + (call.events || []).length + ")"
    });
    toggle.addEventListener("click", function () {
      timeline.hidden = !timeline.hidden;
      toggle.setAttribute("aria-expanded", timeline.hidden ? "false" : "true");
      if (timeline.hidden) delete openTimelines[call.id]; else openTimelines[call.id] = true;
      fit();
    });
    return el("tr", { "data-call": call.id, "data-state": call.state }, [
      el("td", {}, [call.created_at || "", el("div", { className: "sub" }, [toggle])]), numberCell, employeeCell, callCell, delivery
    ]);
  }

  /* A button that puts something failed back in the outbox, then reloads the journal. */
  function againButton(text, label, path, done) {
    var again = el("button", { type: "button", className: "btn btn-small", "aria-label": label, text: text });
    again.addEventListener("click", function () {
      again.disabled = true;
      api("POST", path, {}).then(function (result) {
        if (!result.ok) { again.disabled = false; showFailure(result); return; }
        flash(done);
        loadJournal();
      });
    });
    return again;
  }

  function timelineRow(call) {
    var facts = [call.bitrix_call_id ? t("bitrix_call_id", { id: call.bitrix_call_id }) : M.not_registered];
    if (call.crm) facts.push(t("crm", { type: call.crm.type_text, id: call.crm.id }));
    if (call.pbx_call_id) facts.push("PBX_CALL_ID " + call.pbx_call_id);
    var events = el("ol", { className: "events" });
    (call.events || []).forEach(function (event) { events.appendChild(eventItem(call, event)); });
    if (!(call.events || []).length) events.appendChild(el("li", { className: "event", text: M.no_events }));
    var box = el("div", { className: "timeline" }, [el("p", { className: "timeline-facts", text: facts.join(" · ") }), events]);
    var id = "timeline-" + call.id;
    return el("tr", { className: "timeline-row", id: id, "data-timeline": call.id, hidden: !openTimelines[call.id] }, [
      el("td", { colspan: "5" }, [box])
    ]);
  }

  function eventItem(call, event) {
    var head = el("div", { className: "event-head" }, [
      el("span", { className: "event-time", text: event.created_at || "" }), " ",
      el("strong", { text: event.kind_text }), " ",
      stateBadge(event.state, event.state_text),
      event.delivered_at ? el("span", { className: "event-when", text: " " + t("delivered_at", { time: event.delivered_at }) }) : null
    ]);
    var said = (event.details || []).concat((event.employees || []).map(employeeText));
    var item = el("li", { className: "event", "data-event": String(event.id), "data-kind": event.kind, "data-state": event.state }, [
      head, said.length ? el("div", { className: "sub", text: said.join(" · ") }) : null,
      event.note ? el("p", { className: "event-note", text: event.note }) : null,
      event.problem ? el("p", { className: "event-problem", text: event.problem }) : null
    ]);
    if (event.error && event.problem.indexOf(event.error) === -1) item.appendChild(el("p", { className: "sub", text: event.error }));
    if (event.recording) {
      item.appendChild(el("p", { className: "recording recording-" + event.recording.state }, [
        stateBadge(event.recording.state === "attached" ? "delivered" : event.recording.state, recordingText(event.recording)),
        event.recording.filename && said.join(" ").indexOf(event.recording.filename) === -1 ? " " + event.recording.filename : null
      ]));
      if (event.recording.problem && event.recording.problem !== event.problem) item.appendChild(el("p", { className: "event-problem", text: event.recording.problem }));
    }
    if (event.can_retry) {
      var path = "/calls/" + encodeURIComponent(call.id) + "/events/" + encodeURIComponent(event.id) + "/deliver-again";
      item.appendChild(el("div", {}, [againButton(M.deliver_again, M.deliver_again + ": " + event.kind_text, path, M.event_requeued)]));
    }
    return item;
  }

  function wireJournal() {
    if (!$("journal-rows")) return;
    document.querySelectorAll("input[name='show']").forEach(function (radio) {
      radio.addEventListener("change", function () { journalShow = radio.value; loadJournal(); });
    });
    $("journal-refresh").addEventListener("click", loadJournal);
    wireRedeliverAll();
  }

  function wireRedeliverAll() {
    var opener = $("redeliver-all"), confirmBox = $("redeliver-confirm");
    function closeConfirm() {
      confirmBox.hidden = true;
      opener.setAttribute("aria-expanded", "false");
      fit();
    }
    opener.addEventListener("click", function () {
      confirmBox.hidden = false;
      opener.setAttribute("aria-expanded", "true");
      $("redeliver-yes").focus();
      fit();
    });
    $("redeliver-no").addEventListener("click", function () { closeConfirm(); opener.focus(); });
    confirmBox.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { closeConfirm(); opener.focus(); }
    });
    $("redeliver-yes").addEventListener("click", function () {
      $("redeliver-yes").disabled = true;
      api("POST", "/calls/deliver-all-failed", { confirm: true }).then(function (result) {
        $("redeliver-yes").disabled = false;
        closeConfirm();
        opener.focus();
        if (!result.ok) { showFailure(result); return; }
        flash(result.data.message);
        loadJournal();
      });
    });
  }

  // --- start ----------------------------------------------------------------------------------

  function start() {
    renderHealth(S.health);
    renderExamples();
    renderMapping();
    wireReauth();
    wireConnection();
    wireDefaults();
    wireMapping();
    wireJournal();
    wireOriginate();
    wireLines();
    wireOriginations();
    loadEmployees();
    loadLines();
    loadOriginations();
    loadJournal();
    document.body.dataset.ready = "1";
    if (window.BX24 && typeof window.BX24.init === "function") window.BX24.init(fit);
    fit();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
