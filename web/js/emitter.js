// A minimal event emitter: the modules below talk to each other through
// events, so the UI can be swapped without touching the call logic.
export class Emitter {
  #handlers = new Map();

  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  emit(type, data) {
    for (const fn of this.#handlers.get(type) ?? []) {
      // One failing listener must not stop the others (or the caller).
      try {
        fn(data);
      } catch (err) {
        console.error(`listener for ${type} failed`, err);
      }
    }
  }
}
