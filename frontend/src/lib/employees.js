/* The portal's active employees (GET /employees, asked of Bitrix24 by the server), by id, for
 * every block that names someone. */
import { reactive } from 'vue'
import { api, failureText, t } from './page.js'

export const employees = reactive({ loaded: false, failed: '', list: [], byId: {} })

export function setEmployees(list) {
  employees.list = list || []
  employees.byId = Object.fromEntries(employees.list.map(e => [e.id, e]))
  employees.loaded = true
  employees.failed = ''
}

export async function loadEmployees() {
  const result = await api('GET', '/employees')
  if (!result.ok) {
    employees.failed = t('employees_failed', { error: failureText(result) })
    employees.loaded = true
    return
  }
  setEmployees(result.data.employees)
}

/** "Clara Support (#3)"; "User 3" before the list is loaded; "User 3 (not an active
 * employee)" when it is and they are not in it. */
export function employeeName(userId) {
  if (!userId) return ''
  const found = employees.byId[userId]
  if (found) return `${found.name || t('user', { id: userId })} (#${userId})`
  return employees.loaded && !employees.failed
    ? t('unknown_user', { id: userId })
    : t('user', { id: userId })
}

/** The employees as a select menu's items ({value, label}), the chosen one kept even when it
 * is not in the list. */
export function employeeItems(chosen) {
  const items = employees.list.map(e => ({ value: e.id, label: employeeName(e.id) }))
  if (chosen && !employees.byId[chosen]) items.push({ value: chosen, label: employeeName(chosen) })
  return items
}
