// The notes page: sign in, list, create, edit, share and delete notes over the two REST
// services, and follow the gateway's WebSocket so changes made elsewhere appear without a
// reload. The socket resumes from the last event sequence after a reconnect; the indicator in
// the header shows the connection and counts reconnects.

export {}; // a module: nothing leaks into the page's globals

interface Note {
  id: string;
  owner_id: string;
  title: string;
  body: string;
  version: number;
  shared_with: string[];
  updated_at: string;
}
interface User { id: string; name: string; }
interface NoteEvent { kind: "created" | "updated" | "shared" | "deleted"; note: Note; by: string; }
type ServerMessage =
  | { type: "hello"; seq: number; resync: boolean; user_id: string }
  | { type: "event"; seq: number; event: NoteEvent };

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el as T;
};

const state = {
  usersUrl: "",
  notesUrl: "",
  token: "",
  me: null as User | null,
  users: new Map<string, string>(),
  notes: new Map<string, Note>(),
  editing: new Set<string>(),
  lastSeq: null as number | null,
  reconnects: 0,
};

async function api<T>(url: string, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  const r = await fetch(url, { ...init, headers });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw Object.assign(new Error(body?.error?.message ?? `HTTP ${r.status}`), { status: r.status, body });
  }
  return (r.status === 204 ? undefined : await r.json()) as T;
}

// ---- sign in -------------------------------------------------------------------------------

async function signIn(name: string): Promise<void> {
  try {
    await api<User>(`${state.usersUrl}/users`, { method: "POST", body: JSON.stringify({ name }) });
  } catch (e) {
    if ((e as { status?: number }).status !== 409) throw e; // 409: the name exists, sign in
  }
  const session = await api<{ token: string; user: User }>(`${state.usersUrl}/sessions`, {
    method: "POST",
    body: JSON.stringify({ name }),
  });
  state.token = session.token;
  state.me = session.user;
  $("whoami").textContent = `signed in as ${session.user.name}`;
  $("signin-view").hidden = true;
  $("notes-view").hidden = false;
  $("session").hidden = false;
  await loadUsers();
  connect();
}

async function loadUsers(): Promise<void> {
  const users = await api<User[]>(`${state.usersUrl}/users`);
  state.users = new Map(users.map((u) => [u.id, u.name]));
}

async function loadNotes(): Promise<void> {
  const notes = await api<Note[]>(`${state.notesUrl}/notes`);
  state.notes = new Map(notes.map((n) => [n.id, n]));
  render();
}

// ---- live updates ---------------------------------------------------------------------------

function setConn(s: "connecting" | "open" | "reconnecting" | "closed", text: string): void {
  const el = $("conn");
  el.dataset.state = s;
  el.textContent = text;
}

let backoff = 500;
let pending: NoteEvent[] | null = null;

function connect(): void {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  ws.onopen = () => ws.send(JSON.stringify({ token: state.token, since: state.lastSeq }));
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data as string) as ServerMessage;
    if (msg.type === "hello") {
      backoff = 500;
      setConn("open", "live");
      // First connection or too far behind: (re)load the list. A resume gets the missed events.
      // Events that arrive while the list loads wait, then apply on top of it (an upsert by
      // version), so a change made between the hello and the list's query is not lost.
      if (state.lastSeq === null || msg.resync) {
        state.lastSeq = msg.seq;
        pending = [];
        loadNotes()
          .catch(showError)
          .finally(() => {
            const queued = pending ?? [];
            pending = null;
            queued.forEach(apply);
          });
      }
      return;
    }
    state.lastSeq = msg.seq;
    if (pending) pending.push(msg.event);
    else apply(msg.event);
  };
  ws.onclose = (e) => {
    if (!state.token) return;
    if (e.code === 4001) {
      setConn("closed", "signed out (token refused)");
      return;
    }
    state.reconnects += 1;
    $("reconnects").textContent = `${state.reconnects} reconnect${state.reconnects === 1 ? "" : "s"}`;
    setConn("reconnecting", `reconnecting (${e.code})`);
    const wait = backoff + Math.random() * backoff;
    backoff = Math.min(backoff * 2, 8000);
    setTimeout(connect, wait);
  };
}

function apply(e: NoteEvent): void {
  const known = state.notes.get(e.note.id);
  if (e.kind === "deleted") {
    state.notes.delete(e.note.id);
  } else if (!known || e.note.version >= known.version) {
    state.notes.set(e.note.id, e.note);
    for (const id of [e.note.owner_id, ...e.note.shared_with]) {
      if (!state.users.has(id)) loadUsers().then(() => render()).catch(showError);
    }
  }
  render(e.note.id);
}

// ---- rendering ------------------------------------------------------------------------------

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

function userName(id: string): string {
  return state.users.get(id) ?? id.slice(0, 8);
}

function render(changed?: string): void {
  const list = $("notes");
  const existing = new Map<string, HTMLElement>();
  list.querySelectorAll<HTMLElement>(".note").forEach((n) => existing.set(n.dataset.id ?? "", n));
  const notes = [...state.notes.values()].sort((a, b) => b.updated_at.localeCompare(a.updated_at));
  const items = notes.map((n) => {
    const old = existing.get(n.id);
    // A note being edited keeps its form (a save made on an old version is answered 409).
    if (old && state.editing.has(n.id)) return old;
    const card = view(n);
    if (n.id === changed) card.classList.add("changed");
    return card;
  });
  list.replaceChildren(...items);
}

function view(n: Note): HTMLElement {
  const mine = n.owner_id === state.me?.id;
  const shared = n.shared_with.length ? ` · shared with ${n.shared_with.map(userName).join(", ")}` : "";
  const card = el("article", { className: "note" },
    el("h3", { className: "title", textContent: n.title }),
    el("p", { className: "body", textContent: n.body }),
    el("div", { className: "meta", textContent: `by ${userName(n.owner_id)} · v${n.version}${shared}` }));
  card.dataset.id = n.id;
  card.dataset.version = String(n.version);
  const actions = el("div", { className: "actions" });
  actions.append(el("button", { className: "edit", textContent: "Edit", onclick: () => edit(card, n) }));
  if (mine) {
    const others = [...state.users].filter(([id]) => id !== n.owner_id && !n.shared_with.includes(id));
    const pick = el("select", { className: "share-user" },
      ...others.map(([id, nm]) => el("option", { value: id, textContent: nm })));
    actions.append(pick,
      el("button", { className: "share", textContent: "Share", disabled: others.length === 0,
        onclick: () => act(() => api(`${state.notesUrl}/notes/${n.id}/shares`, { method: "POST", body: JSON.stringify({ user_id: pick.value }) })) }),
      el("button", { className: "delete", textContent: "Delete",
        onclick: () => act(() => api(`${state.notesUrl}/notes/${n.id}`, { method: "DELETE" })) }));
  }
  card.append(actions);
  return card;
}

function edit(card: HTMLElement, n: Note): void {
  state.editing.add(n.id);
  const title = el("input", { className: "edit-title", value: n.title });
  const body = el("textarea", { className: "edit-body", value: n.body, rows: 4 });
  const done = () => { state.editing.delete(n.id); render(); };
  const save = el("button", { className: "save", textContent: "Save", onclick: async () => {
    try {
      const saved = await api<Note>(`${state.notesUrl}/notes/${n.id}`, {
        method: "PUT",
        body: JSON.stringify({ title: title.value, body: body.value, version: n.version }),
      });
      state.notes.set(saved.id, saved);
      done();
    } catch (e) {
      showError(e);
      if ((e as { status?: number }).status === 409) done(); // show the current version
    }
  } });
  card.replaceChildren(title, body, el("div", { className: "actions" }, save,
    el("button", { className: "cancel", textContent: "Cancel", onclick: done })));
}

async function act(f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
    $("notes-error").textContent = "";
  } catch (e) {
    showError(e);
  }
}

function showError(e: unknown): void {
  const target = state.token ? "notes-error" : "signin-error";
  $(target).textContent = e instanceof Error ? e.message : String(e);
}

// ---- start ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfg = await (await fetch("config.json")).json();
  state.usersUrl = cfg.users_url;
  state.notesUrl = cfg.notes_url;
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($<HTMLInputElement>("name").value.trim()).catch(showError);
  });
  $("new-note").addEventListener("submit", (e) => {
    e.preventDefault();
    const title = $<HTMLInputElement>("new-title");
    const body = $<HTMLTextAreaElement>("new-body");
    act(async () => {
      const n = await api<Note>(`${state.notesUrl}/notes`, { method: "POST", body: JSON.stringify({ title: title.value, body: body.value }) });
      if (!state.notes.has(n.id)) state.notes.set(n.id, n);
      title.value = "";
      body.value = "";
      render(n.id);
    });
  });
}

main().catch(showError);
