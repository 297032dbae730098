// The settings page's build: Vue 3 with Bitrix24's UI kit (b24ui) through its Vite plugin, no
// Nuxt server. The output goes to the top-level static/settings-page/ (served by Flask under
// /static/), committed so that `make run` needs no Node; `make frontend` rebuilds it and CI fails
// when the committed files differ from a fresh build. File names carry no hashes and the bundle is
// one file, so the same sources give the same bytes on every machine.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import bitrix24UIPluginVite from '@bitrix24/b24ui-nuxt/vite'

const outDir = fileURLToPath(new URL('../static/settings-page', import.meta.url))

export default defineConfig({
  base: './',
  publicDir: 'public', // refused.css: the refusal page has no script
  plugins: [
    vue(),
    bitrix24UIPluginVite({
      colorMode: false, // light, as Bitrix24's own settings pages; nothing kept in localStorage
      router: false, // one page inside Bitrix24's iframe: links are plain <a>
      dts: false,
      prose: false
    })
  ],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: false,
    cssCodeSplit: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 4096,
    modulePreload: false,
    rolldownOptions: {
      input: fileURLToPath(new URL('./src/main.js', import.meta.url)),
      output: {
        entryFileNames: 'settings.js',
        chunkFileNames: 'settings-[name].js',
        assetFileNames: 'settings[extname]',
        codeSplitting: false
      }
    }
  }
})
