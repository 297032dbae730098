/* Confirmations and failures as the UI kit's toasts (useToast), always where the admin looks.
 *
 * Bitrix24 fits the app's iframe to its content (BX24.fitWindow), so the iframe is as tall as the
 * page and the portal's window scrolls it: a toast fixed to the iframe's top or bottom would be
 * thousands of pixels away from what the admin sees (issue 14 item 2). `band.js` knows which part
 * of the iframe is on the screen; the toaster and the modals are placed inside that part.
 */
import { markRaw } from 'vue'
import { catchUp } from './band.js'

let toaster = null

/** Called once by App.vue's setup with the kit's useToast(). */
export function useToaster(toast) {
  toaster = markRaw(toast)
}

/** A confirmation ("Saved.", "Copied." …): green, gone after 5 s; `actions` (e.g. Undo) are the
 * kit's toast buttons. */
export function done(text, options = {}) {
  catchUp()
  return toaster?.add({
    description: text,
    color: 'air-primary-success',
    duration: options.actions ? 10000 : 5000,
    ...options
  })
}

/** A failure that belongs to no field: red, kept until closed. */
export function failed(text) {
  catchUp()
  return toaster?.add({ description: text, color: 'air-primary-alert', duration: 0 })
}

/** Something to know that is neither (a line that existed already). */
export function told(text) {
  catchUp()
  return toaster?.add({ description: text, color: 'air-primary', duration: 7000 })
}
