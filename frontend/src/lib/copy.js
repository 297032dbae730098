/* Copy to the clipboard, with a confirmation; inside Bitrix24's iframe the Clipboard API may be
 * refused (no clipboard-write permission), then the older execCommand way. */
import { M } from './page.js'
import { done, failed } from './notify.js'

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text)
    done(M.copied)
    return
  } catch {
    // the iframe has no clipboard permission: select and copy the old way
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.className = 'fixed top-0 left-0 opacity-0'
  document.body.appendChild(area)
  area.select()
  let copied = false
  try { copied = document.execCommand('copy') } catch { copied = false }
  area.remove()
  if (copied) done(M.copied)
  else failed(M.copy_failed)
}
