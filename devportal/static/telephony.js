/*
 * The development portal's Telephony page (devportal/shell.py, templates/telephony.html):
 * a click on a CRM contact's number is click-to-call (POST shell/click-to-call), the callback
 * form orders a callback (POST shell/callback); the answer's message, or the refusal, shows in
 * #notice. Every `refresh` seconds the live parts (sections marked data-live: the events sent,
 * the PBX stand-in, the calls) are fetched again and replaced, so the form keeps what is typed.
 */
(function () {
  'use strict';
  const config = JSON.parse(document.getElementById('telephony-config').textContent);
  const notice = document.getElementById('notice');

  function say(text, isError) {
    notice.textContent = text || '';
    notice.classList.toggle('error', Boolean(isError));
  }

  async function post(path, body) {
    const response = await fetch(config.base + 'shell/' + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(Object.assign({ user_id: config.user_id, lang: config.lang }, body)),
    });
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      throw data || {};
    }
    return data;
  }

  async function run(busy, path, body) {
    say(busy);
    try {
      const data = await post(path, body);
      say(data.message);
      setTimeout(function () { reload().catch(function () {}); }, 1000); // show the event
    } catch (error) {
      say((error && error.error_description) || config.text.failed_request, true);
    }
  }

  async function reload() {
    const response = await fetch(window.location.href, { headers: { Accept: 'text/html' } });
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
    for (const section of document.querySelectorAll('[data-live]')) {
      const replacement = fresh.getElementById(section.id);
      if (replacement) {
        section.replaceChildren(...replacement.childNodes);
      }
    }
  }

  document.addEventListener('click', function (event) {
    const button = event.target.closest('button.dial');
    if (button) {
      run(config.text.calling, 'click-to-call', { contact_id: Number(button.dataset.contactId) });
    }
  });

  document.getElementById('callback-form').addEventListener('submit', function (event) {
    event.preventDefault();
    const form = event.target;
    run(config.text.ordering, 'callback', {
      phone: form.elements.phone.value,
      text: form.elements.text.value,
    });
  });

  if (config.refresh > 0) {
    setInterval(function () { reload().catch(function () {}); }, config.refresh * 1000);
  }
})();
