/* The settings page of b24app, on Bitrix24's UI kit (b24ui) with Vue 3.
 * Built by `make frontend` (vite) into the top-level static/settings-page/. */
import './main.css'
import { createApp } from 'vue'
import b24UiPlugin from '@bitrix24/b24ui-nuxt/vue-plugin'
import App from './App.vue'
import { fitFrame, followBand } from './lib/band.js'

followBand()
const app = createApp(App)
app.use(b24UiPlugin)
app.mount('#app')
fitFrame()
