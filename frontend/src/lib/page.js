/* The page's state, words and requests.
 *
 * The server embeds everything the page shows first, and its words in the portal's language, as
 * JSON (<script type="application/json" id="b24app-state">: no inline script, the CSP allows
 * only our own files). Every request carries the signed page token in its header (X-Page-Token);
 * there are no cookies in Bitrix24's third-party iframe. Text from Bitrix24 or the PBX is only
 * ever rendered as text (Vue's interpolation), never as HTML.
 */
import { reactive } from 'vue'

const embedded = JSON.parse(document.getElementById('b24app-state').textContent)

export const S = reactive(embedded)
export const M = embedded.messages
export const isAdmin = !!(embedded.viewer && embedded.viewer.is_admin)
export const lang = document.documentElement.lang === 'ru' ? 'ru' : 'en'

/** The message `key` with its %(name)s placeholders filled from `vars`. */
export function t(key, vars) {
  let text = M[key] ?? key
  for (const [name, value] of Object.entries(vars || {})) {
    text = text.split(`%(${name})s`).join(String(value))
  }
  return text
}

/** One request to the page's API: {ok, status, data}; never throws (a network failure is
 * status 0 with the page's words for it). */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json', [S.token_header]: S.token }
  const options = { method, headers, credentials: 'omit', cache: 'no-store' }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    options.body = JSON.stringify(body)
  }
  let response
  try {
    response = await fetch(S.api + path, options)
  } catch {
    return { ok: false, status: 0, data: { error: { code: 'network', message: M.network } } }
  }
  const text = await response.text()
  let data
  try {
    data = JSON.parse(text)
  } catch {
    data = { raw: text }
  }
  return { ok: response.ok, status: response.status, data }
}

/** A file from the API (the CSV export): a Blob, or null when it could not be had. */
export async function download(path) {
  try {
    const response = await fetch(S.api + path, {
      headers: { [S.token_header]: S.token }, credentials: 'omit', cache: 'no-store'
    })
    return response.ok ? await response.blob() : null
  } catch {
    return null
  }
}

/** The words of a failed request: its errors' messages, else its error's, else the status. */
export function failureText(result) {
  const data = result.data || {}
  if (data.errors && data.errors.length) return data.errors.map(e => e.message).join(' ')
  if (data.error && data.error.message) return data.error.message
  return t('error', { error: result.status })
}

/** {field: message} of a 422 answer (the fields the form shows its errors next to). */
export function fieldErrors(result) {
  const found = {}
  for (const error of (result.data && result.data.errors) || []) found[error.field] = error.message
  return found
}
