/*
 * The development portal's shell page (devportal/shell.py): opens app frames as Bitrix24
 * does and answers the BX24.js stand-in (bx24.js) through postMessage. The message protocol is
 * described in shell.py's docstring and at the top of bx24.js.
 *
 * window.bx24Shell exposes what tests look at: `ignored` (messages dropped, with their origin
 * and the reason), `handled` (commands acted on) and `frame` (the open frame's FRAME).
 */
(function () {
  'use strict';
  const config = JSON.parse(document.getElementById('shell-config').textContent);
  const holder = document.getElementById('frame-holder');
  const notice = document.getElementById('notice');
  const shell = { ignored: [], handled: [], frame: null };
  window.bx24Shell = shell;
  let current = null; // {frame, iframe, auth, expiresAt, finishing}

  function say(text) {
    notice.textContent = text || '';
  }

  async function api(path, body) {
    const response = await fetch(config.base + 'shell/' + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      throw data;
    }
    return data;
  }

  function refusal(error) {
    return (error && error.error_description) || config.text.failed;
  }

  async function start(action, clientId) {
    say(action === 'install' ? config.text.installing_now : config.text.opening);
    try {
      const data = await api('frames', {
        client_id: clientId, action: action, user_id: config.user.id, lang: config.lang,
      });
      show(data.frame);
      say('');
    } catch (error) {
      say(refusal(error));
    }
  }

  /* Bitrix24's way of opening a frame page: a hidden form POSTed into a named iframe. */
  function show(frame) {
    const iframe = document.createElement('iframe');
    iframe.name = frame.name;
    iframe.className = 'app-frame';
    iframe.title = frame.client_id;
    iframe.dataset.page = frame.page;
    holder.replaceChildren(iframe);
    current = {
      frame: frame,
      iframe: iframe,
      auth: {
        access_token: frame.form.AUTH_ID,
        refresh_token: frame.form.REFRESH_ID,
        domain: frame.query.DOMAIN,
        member_id: frame.form.member_id,
      },
      expiresAt: Date.now() + Number(frame.form.AUTH_EXPIRES) * 1000,
      finishing: false,
    };
    shell.frame = frame;
    document.getElementById('page-title').textContent = frame.client_id;
    highlight(frame.client_id);
    document.getElementById('market').hidden = true;
    document.getElementById('workarea').hidden = false;
    const form = document.createElement('form');
    form.method = 'post';
    form.target = frame.name;
    form.action = frame.url + '?' + new URLSearchParams(frame.query).toString();
    form.hidden = true;
    for (const [name, value] of Object.entries(frame.form)) {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
    form.remove();
  }

  /* An installed app gets its item in the left menu, as in Bitrix24. */
  function addToMenu(clientId) {
    const menu = document.getElementById('menu');
    const known = Array.from(menu.querySelectorAll('li.app')).map((li) => li.dataset.clientId);
    if (known.includes(clientId)) {
      return;
    }
    const item = document.createElement('li');
    item.className = 'app';
    item.dataset.clientId = clientId;
    const link = document.createElement('a');
    link.href = config.base + 'marketplace/app/' + encodeURIComponent(clientId) + '/?' +
      new URLSearchParams({ as_user: config.user.id, lang: config.lang }).toString();
    link.textContent = clientId;
    item.append(link);
    menu.append(item);
    highlight(clientId);
  }

  function highlight(clientId) {
    for (const item of document.querySelectorAll('#menu a')) {
      const current = item.parentElement.dataset.clientId === clientId;
      item.toggleAttribute('aria-current', current);
      if (current) {
        item.setAttribute('aria-current', 'page');
      }
    }
  }

  function authOf(f) {
    return Object.assign({}, f.auth, {
      expires_in: Math.max(0, Math.floor((f.expiresAt - Date.now()) / 1000)),
    });
  }

  async function refresh(f) {
    const data = await api('refresh', {
      client_id: f.frame.client_id, refresh_token: f.auth.refresh_token,
    });
    f.auth.access_token = data.auth.access_token;
    f.auth.refresh_token = data.auth.refresh_token;
    f.expiresAt = Date.now() + data.auth.expires_in * 1000;
  }

  async function rest(f, method, params) {
    const response = await fetch(config.base + 'rest/' + method + '.json', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(Object.assign({}, params || {}, { auth: f.auth.access_token })),
    });
    let answer;
    try {
      answer = await response.json();
    } catch (error) {
      answer = { error: 'INVALID_RESPONSE', error_description: 'HTTP ' + response.status };
    }
    return { status: response.status, answer: answer };
  }

  function size(value, least, most) {
    const number = Math.round(Number(value));
    return Number.isFinite(number) ? Math.min(Math.max(number, least), most) : null;
  }

  const commands = {
    init(f) {
      return {
        auth: authOf(f),
        lang: f.frame.lang,
        isAdmin: f.frame.is_admin,
        placement: f.frame.form.PLACEMENT,
        placementOptions: JSON.parse(f.frame.form.PLACEMENT_OPTIONS || '{}'),
      };
    },
    async installFinish(f) {
      if (f.frame.page !== 'install' || f.finishing) {
        return false; // outside the installer it does nothing (bx24-install-finish.md)
      }
      f.finishing = true;
      say(config.text.finishing);
      try {
        const data = await api('install-finish', {
          client_id: f.frame.client_id, user_id: f.frame.user_id, lang: f.frame.lang,
        });
        addToMenu(f.frame.client_id);
        setTimeout(function () { show(data.frame); say(''); }, 0); // after the answer
      } catch (error) {
        f.finishing = false;
        say(refusal(error));
        throw error;
      }
      return true;
    },
    resizeWindow(f, params) {
      const height = size(params.height, 50, 20000);
      const width = params.width === '100%' ? null : size(params.width, 100, 10000);
      if (height !== null) {
        f.iframe.style.height = height + 'px';
      }
      f.iframe.style.width = width === null ? '100%' : width + 'px';
      return { width: f.iframe.offsetWidth, height: f.iframe.offsetHeight };
    },
    setTitle(f, params) {
      const title = String(params.title || '').slice(0, 200);
      document.getElementById('page-title').textContent = title;
      document.title = title;
      return true;
    },
    async refreshAuth(f) {
      await refresh(f);
      return { auth: authOf(f) };
    },
    async callMethod(f, params) {
      const method = String(params.method || '');
      if (!/^[A-Za-z0-9_.]+$/.test(method)) {
        return { status: 404, answer: { error: 'ERROR_METHOD_NOT_FOUND',
                                        error_description: 'Method not found!' } };
      }
      let refreshed = false;
      if (f.expiresAt <= Date.now()) {
        await refresh(f);
        refreshed = true;
      }
      let out = await rest(f, method, params.params);
      if (out.status === 401 && out.answer && out.answer.error === 'expired_token') {
        await refresh(f);
        refreshed = true;
        out = await rest(f, method, params.params);
      }
      if (refreshed) {
        out.auth = authOf(f);
      }
      return out;
    },
  };

  function ignore(event, reason) {
    shell.ignored.push({ origin: event.origin, reason: reason });
    console.warn('bx24 shell: ignored a message from ' + event.origin + ' (' + reason + ')');
  }

  window.addEventListener('message', function (event) {
    const f = current;
    const message = event.data;
    if (!f || event.origin !== f.frame.origin) {
      return ignore(event, 'origin');
    }
    if (event.source !== f.iframe.contentWindow) {
      return ignore(event, 'source');
    }
    if (!message || message.bx24 !== 1 || message.sid !== f.frame.sid ||
        !Object.prototype.hasOwnProperty.call(commands, message.command)) {
      return ignore(event, 'message');
    }
    shell.handled.push({ command: message.command, origin: event.origin });
    const reply = function (payload) {
      const answer = Object.assign({ bx24: 1, sid: f.frame.sid, id: message.id }, payload);
      if (f.iframe.contentWindow) { // gone when the frame was replaced meanwhile
        f.iframe.contentWindow.postMessage(answer, f.frame.origin);
      }
    };
    Promise.resolve()
      .then(function () { return commands[message.command](f, message.params || {}); })
      .then(
        function (result) { reply({ result: result }); },
        function (error) {
          reply({ error: { error: (error && error.error) || 'ERROR',
                           error_description: refusal(error) } });
        },
      );
  });

  document.addEventListener('click', function (event) {
    const button = event.target.closest('button[data-action]');
    if (button) {
      start(button.dataset.action, button.dataset.clientId);
    }
  });

  if (config.open) {
    start('open', config.open);
  }
})();
