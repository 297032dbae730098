/* Which part of the page is on the portal's screen, and fitting the iframe to the page.
 *
 * In Bitrix24 the app's iframe is made as tall as the page (BX24.fitWindow), and the portal's
 * window scrolls it, so `position: fixed` in the iframe is fixed to the whole page, not to what
 * the admin sees. An IntersectionObserver without a root measures against the top-level window,
 * across origins. The page is covered by invisible stripes STRIPE px tall; the ones intersecting
 * the window, and their intersection rectangles, give the part of the page on the screen to a
 * tenth of a stripe (an observer reports a change of how much of a target it sees, so one tall
 * target would say nothing while the window scrolls along its middle). The band is written to
 * three CSS variables on <html> (CSSOM, allowed by the CSP):
 *   --b24app-band-top        its top, from the iframe's top (px)
 *   --b24app-band-bottom     its bottom's distance from the iframe's bottom (px)
 *   --b24app-band-middle     its middle, from the iframe's top (px)
 * The toaster sits at the band's bottom and the modals at its middle (App.vue, ConfirmModal.vue).
 * Outside an iframe the band is the window itself.
 */
const STRIPE = 32
const THRESHOLDS = Array.from({ length: 11 }, (_, n) => n / 10)
const seen = new Map() // stripe -> its visible rectangle, or null
let observer = null

function write(top, bottom) {
  const root = document.documentElement.style
  const height = window.innerHeight
  root.setProperty('--b24app-band-top', `${Math.max(0, top)}px`)
  root.setProperty('--b24app-band-bottom', `${Math.max(0, height - bottom)}px`)
  root.setProperty('--b24app-band-middle', `${Math.max(0, (top + bottom) / 2)}px`)
}

function update() {
  let top = Infinity
  let bottom = -Infinity
  for (const rect of seen.values()) {
    if (!rect) continue
    top = Math.min(top, rect.top)
    bottom = Math.max(bottom, rect.bottom)
  }
  if (top < bottom) write(top, bottom)
}

function take(entries) {
  for (const entry of entries) seen.set(entry.target, entry.isIntersecting ? entry.intersectionRect : null)
  update()
}

/** The band as the observer last saw it, with what it has seen since but not yet reported
 * (called before a toast or a modal is shown: the page may just have scrolled). */
export function catchUp() {
  if (observer) take(observer.takeRecords())
}

/** Start following the visible band (once, before the app mounts). */
export function followBand() {
  write(0, window.innerHeight)
  if (!('IntersectionObserver' in window) || !('ResizeObserver' in window)) return
  const holder = document.createElement('div')
  holder.className = 'b24app-band'
  holder.setAttribute('aria-hidden', 'true')
  document.body.appendChild(holder)
  observer = new IntersectionObserver(take, { threshold: THRESHOLDS })
  const cover = () => {
    const wanted = Math.ceil(document.body.scrollHeight / STRIPE)
    while (holder.children.length < wanted) {
      const stripe = document.createElement('div')
      stripe.style.top = `${holder.children.length * STRIPE}px`
      holder.appendChild(stripe)
      observer.observe(stripe)
    }
    while (holder.children.length > wanted) {
      const stripe = holder.lastElementChild
      observer.unobserve(stripe)
      seen.delete(stripe)
      stripe.remove()
    }
  }
  new ResizeObserver(cover).observe(document.body)
  cover()
}

/** Fit Bitrix24's iframe to the page whenever the page's height changes (BX24.js is there only
 * inside Bitrix24). The height is the page's own (#app), as BX24.fitWindow() measures it, but
 * without the document's scroll height: that is never less than the iframe itself, so an
 * iframe once made taller (a browser zoomed out, a full-page screenshot) would never shrink. */
export function fitFrame() {
  const app = document.getElementById('app')
  let last = 0
  const fit = () => {
    const bx24 = window.BX24
    if (!bx24 || typeof bx24.resizeWindow !== 'function') return
    const style = getComputedStyle(document.body)
    const height = Math.ceil(app.getBoundingClientRect().height + parseFloat(style.marginTop) + parseFloat(style.marginBottom))
    if (height === last) return
    last = height
    try { bx24.resizeWindow('100%', height) } catch { /* outside Bitrix24 */ }
  }
  if (window.BX24 && typeof window.BX24.init === 'function') window.BX24.init(fit)
  if ('ResizeObserver' in window) new ResizeObserver(fit).observe(app)
  fit()
}
