// The actions table: one page of matching actions at a time, read from
// GET /history and never more, so a log of millions pages as fast as one of
// hundreds. Later pages follow the server's `next`; earlier ones are found
// by reading windows back from the first row, growing while a sparse filter
// finds little. Live mode polls from the head and appends.

import { history } from './api.js';

/** Rows on a page. */
export const PAGE = 100;
/** Rows kept in live mode before the oldest are let go. */
const LIVE_KEEP = 500;
/** The most /history requests one move makes (each reads at most 10,000 seqs). */
const MAX_REQUESTS = 40;

/** The client part of an id. */
export function clientOf(id) {
  const i = id.lastIndexOf(':');
  return i < 0 ? id : id.slice(0, i);
}

function time(ts) {
  const d = new Date(ts);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** One page of the log, and how to move through it. */
export class ActionList {
  /** @param {{tbody: HTMLElement, onHead: (head: number) => void}} options */
  constructor({ tbody, onHead }) {
    this.tbody = tbody;
    this.onHead = onHead;
    /** Filters: type, client (exact or `prefix*`), from and to (seqs or null). */
    this.filters = { type: '', client: '', from: null, to: null };
    /** The page's actions, ascending. */
    this.rows = [];
    /** The seq to continue from after the page (null: none known later). */
    this.next = null;
    /** Whether the page may have earlier matches. */
    this.earlier = false;
    /** The data view's seq, as last told. */
    this.head = 0;
    /** Where a filtered search stopped, when it ran out of requests. */
    this.searched = null;
    /** Where a search back that ran out of requests goes on from. */
    this.resumeBefore = null;
    /** The selected seq (marked in the table when it is on the page). */
    this.selected = null;
    /** Where live mode's next poll reads from (null: after the page). */
    this.liveFrom = null;
  }

  #query(from, to, limit) {
    const { type, client } = this.filters;
    return { from, to, limit, type, client };
  }

  #seen(page) {
    if (page.head !== this.head) {
      this.head = page.head;
      this.onHead(page.head);
    }
  }

  get lowest() { return this.filters.from ?? 1; }
  get highest() { return this.filters.to !== null ? Math.min(this.filters.to, this.head) : this.head; }

  /** Up to `want` matches from seq `from` on. */
  async #forward(from, want) {
    const found = [];
    let cursor = from;
    let requests = 0;
    while (cursor !== null && found.length < want && requests < MAX_REQUESTS) {
      const page = await history(this.#query(cursor, this.filters.to, want - found.length));
      requests++;
      this.#seen(page);
      found.push(...page.actions);
      cursor = page.next;
    }
    return { found, next: cursor };
  }

  /** Up to `want` matches at or before seq `to`, the latest ones. */
  async #backward(to, want) {
    let found = [];
    let hi = to;
    let span = want;
    let requests = 0;
    // Whether matches were let go for being more than `want`.
    let dropped = false;
    const keep = (more) => {
      const all = more.concat(found);
      dropped ||= all.length > want;
      return all.slice(-want);
    };
    while (hi >= this.lowest && found.length < want && requests < MAX_REQUESTS) {
      const lo = Math.max(this.lowest, hi - span + 1);
      const chunk = [];
      let cursor = lo;
      while (cursor !== null && requests < MAX_REQUESTS) {
        const page = await history(this.#query(cursor, hi, 1000));
        requests++;
        this.#seen(page);
        chunk.push(...page.actions);
        cursor = page.next;
      }
      if (cursor !== null) {
        // Out of requests inside the window: what it found is not all of
        // it, so keep only what was found after it; Earlier goes on from
        // the window's top.
        this.searched = hi + 1;
        this.resumeBefore = hi;
        return { found, earlier: true };
      }
      found = keep(chunk);
      hi = lo - 1;
      span *= 4;
    }
    this.searched = requests >= MAX_REQUESTS && hi >= this.lowest ? hi + 1 : null;
    this.resumeBefore = this.searched === null ? null : hi;
    return { found, earlier: dropped || hi >= this.lowest };
  }

  /** The first page of matches from seq `from` (the `from` filter, or 1). */
  async loadFrom(from = this.lowest) {
    this.searched = null;
    this.liveFrom = null;
    this.resumeBefore = null;
    const { found, next } = await this.#forward(Math.max(from, this.lowest), PAGE);
    this.rows = found;
    this.next = next;
    this.earlier = (found[0]?.seq ?? from) > this.lowest;
    if (found.length === 0 && next !== null) this.searched = next;
    this.render();
  }

  /** The page of matches ending at or before seq `to` (the newest by default). */
  async loadBefore(to = null) {
    this.searched = null;
    this.liveFrom = null;
    if (to === null) await this.#refreshHead();
    const upto = to ?? this.highest;
    const { found, earlier } = await this.#backward(upto, PAGE);
    this.rows = found;
    this.earlier = earlier;
    this.next = upto < this.highest ? upto + 1 : null;
    this.render();
  }

  async #refreshHead() {
    const page = await history(this.#query(Number.MAX_SAFE_INTEGER, null, 1));
    this.#seen(page);
  }

  /** The page after this one. */
  later() { return this.next === null ? Promise.resolve() : this.loadFrom(this.next); }

  /** The page before this one. */
  earlierPage() {
    const first = Math.min(this.rows[0]?.seq ?? Infinity, (this.resumeBefore ?? Infinity) + 1, this.next ?? this.head + 1);
    return first > this.lowest ? this.loadBefore(first - 1) : Promise.resolve();
  }

  /**
   * Live mode: the matches committed after what was read, appended (the
   * oldest let go beyond LIVE_KEEP). Returns the new actions.
   */
  async poll() {
    // Not from the head a page told: a page read up to a `to` (the newest
    // page, read back from the head it knew) may tell a head that moved on
    // meanwhile, past seqs no page has read.
    const after = this.liveFrom ?? this.next ?? this.head + 1;
    const from = Math.max(after, (this.rows.at(-1)?.seq ?? 0) + 1, this.lowest);
    const page = await history({ ...this.#query(from, null, 1000) });
    this.#seen(page);
    this.liveFrom = page.next ?? page.head + 1;
    if (page.actions.length === 0) return [];
    this.rows.push(...page.actions);
    if (this.rows.length > LIVE_KEEP) {
      this.rows.splice(0, this.rows.length - LIVE_KEEP);
      this.earlier = true;
    }
    this.next = null;
    this.render();
    return page.actions;
  }

  /** Fills the table. */
  render() {
    const frag = document.createDocumentFragment();
    for (const a of this.rows) frag.append(this.#row(a));
    this.tbody.replaceChildren(frag);
  }

  #row(a) {
    const tr = document.createElement('tr');
    tr.tabIndex = 0;
    tr.dataset.seq = String(a.seq);
    tr.dataset.type = a.type;
    tr.dataset.client = a.client ?? clientOf(a.id);
    if (a.seq === this.selected) tr.setAttribute('aria-selected', 'true');
    const td = (className, text, title) => {
      const cell = document.createElement('td');
      cell.className = className;
      cell.textContent = text;
      if (title) cell.title = title;
      return cell;
    };
    const marks = td('c-mark', '');
    if (a.rejected !== undefined) {
      tr.dataset.rejected = 'true';
      const badge = document.createElement('span');
      badge.className = 'badge badge-rejected';
      badge.textContent = 'rejected';
      badge.title = a.rejected;
      marks.append(badge);
    }
    if (a.redacted_by !== undefined) {
      tr.dataset.redacted = 'true';
      const badge = document.createElement('span');
      badge.className = 'badge badge-redacted';
      badge.textContent = 'redacted';
      badge.title = `redacted by seq ${a.redacted_by}`;
      marks.append(badge);
    }
    // On a phone the client goes under the type, in place of its column.
    const kind = td('c-type', a.type, `${a.type} · ${a.id}`);
    const sub = document.createElement('span');
    sub.className = 'sub muted';
    sub.textContent = tr.dataset.client;
    kind.append(sub);
    tr.append(
      td('c-seq num', String(a.seq)),
      kind,
      td('c-client', tr.dataset.client, a.id),
      td('c-time num', time(a.ts), new Date(a.ts).toISOString()),
      marks,
    );
    return tr;
  }

  /** Marks `seq` as selected; its row, if on the page. */
  select(seq) {
    this.selected = seq;
    for (const tr of this.tbody.querySelectorAll('tr[aria-selected]')) tr.removeAttribute('aria-selected');
    const row = this.tbody.querySelector(`tr[data-seq="${seq}"]`);
    row?.setAttribute('aria-selected', 'true');
    return row;
  }

  /** The action at `seq`, if on the page. */
  at(seq) { return this.rows.find((a) => a.seq === seq) ?? null; }

  /** The seqs of the rows before and after `seq` on the page. */
  neighbours(seq) {
    const i = this.rows.findIndex((a) => a.seq === seq);
    if (i < 0) return { before: null, after: null };
    return { before: this.rows[i - 1]?.seq ?? null, after: this.rows[i + 1]?.seq ?? null };
  }
}
