// profiler.js — placeholder until this page lands.
import { notice } from '../ui.js';

export function render(el) {
  el.append(notice('This page is not built yet.', 'warn'));
}
