/*
 * BX24.js stand-in, served by the development portal at /bx24.js.
 *
 * An app page framed by the development portal's shell (/p/<code>/) includes this script instead
 * of Bitrix24's //api.bitrix24.com/api/v1/ (B24APP_BX24_SCRIPT_URL). Like the real library it
 * talks to the portal page around the frame only through window.postMessage; the app page is
 * on another origin and can reach nothing else of the parent.
 *
 * Functions (digest §7.3; sdk/bx24-js-sdk/...):
 *   BX24.init(cb)                  cb() once the parent sent the frame's data; everything else
 *                                  belongs inside it (bx24-init.md)
 *   BX24.installFinish()           the installer is done; the portal completes the installation
 *                                  and opens the app page (bx24-install-finish.md)
 *   BX24.getAuth()                 {access_token, refresh_token, expires_in, domain, member_id}, or
 *                                  false before init or once the token has expired; expires_in is
 *                                  the moment it expires in milliseconds (bx24-get-auth.md's
 *                                  example shows such a timestamp)
 *   BX24.refreshAuth(cb)           a new token pair from the portal; cb(BX24.getAuth())
 *   BX24.isAdmin(), BX24.getLang(), BX24.getDomain()
 *   BX24.callMethod(method, params, cb)
 *                                  the parent performs the REST call with the frame's token (and
 *                                  refreshes it when it has expired); cb(result) where result has
 *                                  data(), error(), more(), total(), time(), next(cb)
 *   BX24.fitWindow(cb), BX24.resizeWindow(width, height, cb)
 *                                  the parent resizes the iframe; cb({width, height})
 *   BX24.setTitle(title, cb)       the portal page's title
 *
 * Message protocol (the same text is in devportal/shell.py):
 *   The shell names the iframe "DOMAIN|PROTOCOL|APP_SID", as Bitrix24 does, so the frame keeps
 *   its APP_SID across its own navigations. The real library derives the parent's origin from
 *   DOMAIN and PROTOCOL; a development portal lives under /p/<code>/ on the devportal's own
 *   address, so this stand-in takes the parent's origin from the address it was loaded from.
 *
 *   child -> parent, targetOrigin = the devportal's origin:
 *       {bx24: 1, sid: APP_SID, id: n, command: NAME, params: {...}}
 *   parent -> child, targetOrigin = the app's origin (that of the frame's URL):
 *       {bx24: 1, sid: APP_SID, id: n, result: ...}
 *    or {bx24: 1, sid: APP_SID, id: n, error: {error, error_description}}
 *
 *   The parent acts on a message only when event.origin is the app's origin, event.source is
 *   the app's iframe and sid is that frame's APP_SID. The child (below) accepts answers only
 *   when event.origin is the devportal's origin, event.source is window.parent and sid is its
 *   own APP_SID.
 *
 *   command        params              result
 *   init           {}                  {auth: AUTH, lang, isAdmin, placement, placementOptions}
 *   installFinish  {}                  true (the shell then opens the app page), false when the
 *                                      frame is not the installer
 *   resizeWindow   {width, height}     {width, height}: the iframe's size in pixels afterwards;
 *                                      width "100%" fills the work area
 *   setTitle       {title}             true
 *   refreshAuth    {}                  {auth: AUTH}
 *   callMethod     {method, params}    {status, answer, auth?}: answer is the REST JSON
 *                                      (result/next/total/time or error/error_description);
 *                                      auth is present when the token was refreshed on the way
 *   AUTH = {access_token, refresh_token, expires_in (seconds left), domain, member_id}
 */
(function () {
  'use strict';
  if (window.BX24) {
    return;
  }

  const script = document.currentScript;
  const PORTAL_ORIGIN = new URL(script ? script.src : location.href, location.href).origin;
  const SID = (window.name || '').split('|')[2] ||
    new URLSearchParams(location.search).get('APP_SID') || '';
  const framed = window.parent !== window;

  const pending = new Map();
  let nextId = 1;
  let data = null; // the init data
  let expiresAt = 0; // milliseconds
  let initStarted = false;
  const waiting = [];

  function send(command, params, callback) {
    if (!framed) {
      console.warn('BX24: this page is not in a portal frame; ' + command + ' ignored');
      return;
    }
    const id = nextId++;
    if (callback) {
      pending.set(id, callback);
    }
    window.parent.postMessage(
      { bx24: 1, sid: SID, id: id, command: command, params: params || {} },
      PORTAL_ORIGIN,
    );
  }

  window.addEventListener('message', function (event) {
    if (event.origin !== PORTAL_ORIGIN || event.source !== window.parent) {
      return; // not our portal: ignore it, whatever it says
    }
    const message = event.data;
    if (!message || message.bx24 !== 1 || message.sid !== SID || !pending.has(message.id)) {
      return;
    }
    const callback = pending.get(message.id);
    pending.delete(message.id);
    callback(message);
  });

  function setAuth(auth) {
    data.auth = auth;
    expiresAt = Date.now() + Number(auth.expires_in || 0) * 1000;
  }

  function getAuth() {
    if (!data || expiresAt <= Date.now()) {
      return false;
    }
    return {
      access_token: data.auth.access_token,
      refresh_token: data.auth.refresh_token,
      expires_in: expiresAt,
      domain: data.auth.domain,
      member_id: data.auth.member_id,
    };
  }

  function init(callback) {
    if (data) {
      setTimeout(callback, 0);
      return;
    }
    if (typeof callback === 'function') {
      waiting.push(callback);
    }
    if (initStarted) {
      return;
    }
    initStarted = true;
    send('init', {}, function (message) {
      if (message.error) {
        console.error('BX24.init: the portal refused', message.error);
        return;
      }
      data = message.result;
      setAuth(data.auth);
      waiting.splice(0).forEach(function (cb) { cb(); });
    });
  }

  function AjaxError(answer, status) {
    this.ex = answer;
    this.status = status;
  }
  AjaxError.prototype.getError = function () { return this.ex; };
  AjaxError.prototype.getStatus = function () { return this.status; };
  AjaxError.prototype.toString = function () {
    return this.ex.error + (this.ex.error_description ? ': ' + this.ex.error_description : '');
  };

  /* What BX24.callMethod's callback receives (bx24-call-method.md: the ajaxResult object). */
  function AjaxResult(answer, status, method, params, callback) {
    this.answer = answer;
    this.status = status;
    this.query = { method: method, data: params };
    this._callback = callback;
  }
  AjaxResult.prototype.data = function () { return this.answer.result; };
  AjaxResult.prototype.error = function () {
    return this.answer.error ? new AjaxError(this.answer, this.status) : false;
  };
  AjaxResult.prototype.more = function () { return this.answer.next !== undefined; };
  AjaxResult.prototype.total = function () { return Number(this.answer.total || 0); };
  AjaxResult.prototype.time = function () { return this.answer.time; };
  AjaxResult.prototype.next = function (callback) {
    if (!this.more()) {
      return false;
    }
    const params = Object.assign({}, this.query.data, { start: this.answer.next });
    callMethod(this.query.method, params, callback || this._callback);
    return true;
  };

  function callMethod(method, params, callback) {
    params = params || {};
    send('callMethod', { method: method, params: params }, function (message) {
      const out = message.result ||
        { status: 0, answer: message.error || { error: 'NETWORK_ERROR' } };
      if (out.auth) {
        setAuth(out.auth);
      }
      if (typeof callback === 'function') {
        callback(new AjaxResult(out.answer || {}, out.status, method, params, callback));
      }
    });
  }

  function refreshAuth(callback) {
    send('refreshAuth', {}, function (message) {
      if (message.result) {
        setAuth(message.result.auth);
      }
      if (typeof callback === 'function') {
        callback(getAuth());
      }
    });
  }

  function resizeWindow(width, height, callback) {
    send('resizeWindow', { width: width, height: height }, function (message) {
      if (typeof callback === 'function') {
        callback(message.result || false);
      }
    });
  }

  function fitWindow(callback) {
    const root = document.documentElement;
    const height = Math.max(root.scrollHeight, document.body ? document.body.scrollHeight : 0);
    resizeWindow('100%', height, callback);
  }

  window.BX24 = {
    init: init,
    installFinish: function () { send('installFinish', {}); },
    getAuth: getAuth,
    refreshAuth: refreshAuth,
    isAdmin: function () { return Boolean(data && data.isAdmin); },
    getLang: function () { return data ? data.lang : undefined; },
    getDomain: function () { return data ? data.auth.domain : undefined; },
    callMethod: callMethod,
    fitWindow: fitWindow,
    resizeWindow: resizeWindow,
    setTitle: function (title, callback) {
      send('setTitle', { title: String(title) }, callback ? function () { callback(); } : null);
    },
    placement: {
      info: function () {
        return data ? { placement: data.placement, options: data.placementOptions } : {};
      },
    },
  };
})();
