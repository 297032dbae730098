/* Which part of the page is on the portal's screen, and fitting the iframe to the page.
 *
 * In Bitrix24 the app's iframe is made as tall as the page (BX24.fitWindow), and the portal's
 * window scrolls it, so `position: fixed` in the iframe is fixed to the whole page, not to what
 * the admin sees. An IntersectionObserver without a root measures against the top-level window,
 * across origins: watching one element as tall as the page, its intersection rectangle is the
 * part of the page on the screen (a thousand thresholds: updated every 0.1 % of the page's
 * height). The band is written to three CSS variables on <html> (CSSOM, allowed by the CSP):
 *   --b24app-band-top        its top, from the iframe's top (px)
 *   --b24app-band-bottom     its bottom's distance from the iframe's bottom (px)
 *   --b24app-band-middle     its middle, from the iframe's top (px)
 * The toaster sits at the band's bottom and the modals at its middle (App.vue, confirm modal).
 * Outside an iframe the band is the window itself.
 */
const THRESHOLDS = Array.from({ length: 1001 }, (_, n) => n / 1000)

function write(top, bottom) {
  const root = document.documentElement.style
  const height = window.innerHeight
  root.setProperty('--b24app-band-top', `${Math.max(0, top)}px`)
  root.setProperty('--b24app-band-bottom', `${Math.max(0, height - bottom)}px`)
  root.setProperty('--b24app-band-middle', `${Math.max(0, (top + bottom) / 2)}px`)
}

/** Start following the visible band (once, before the app mounts). */
export function followBand() {
  const sentinel = document.createElement('div')
  sentinel.className = 'b24app-band-sentinel'
  sentinel.setAttribute('aria-hidden', 'true')
  document.body.appendChild(sentinel)
  write(0, window.innerHeight)
  if (!('IntersectionObserver' in window)) return
  const observer = new IntersectionObserver((entries) => {
    const entry = entries[entries.length - 1]
    if (!entry.isIntersecting) return
    const seen = entry.intersectionRect
    // the page's own scrolling (outside an iframe, or an iframe not fitted) is in the rectangle
    write(seen.top, seen.bottom)
  }, { threshold: THRESHOLDS })
  observer.observe(sentinel)
}

/** Fit Bitrix24's iframe to the page whenever the page's height changes (BX24.js is there
 * only inside Bitrix24). */
export function fitFrame() {
  const fit = () => {
    if (window.BX24 && typeof window.BX24.fitWindow === 'function') {
      try { window.BX24.fitWindow() } catch { /* outside Bitrix24 */ }
    }
  }
  if (window.BX24 && typeof window.BX24.init === 'function') window.BX24.init(fit)
  if ('ResizeObserver' in window) new ResizeObserver(fit).observe(document.body)
  fit()
}
