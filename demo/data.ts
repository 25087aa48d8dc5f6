// Seed data for the demo backends: contacts with personal fields, marketing assets, tickets and the
// standard reply scripts, knowledge-base articles, BI reports and the deterministic BI table rows.
// Everything here is immutable; each backend instance copies what it may change.

export interface Contact {
  readonly id: string;
  readonly name: string;
  readonly company: string;
  readonly email: string;
  readonly phone: string;
  readonly tags: readonly string[];
  readonly address: { readonly city: string; readonly country: string };
}

export const CONTACTS: readonly Contact[] = [
  { id: '1', name: 'Ada Lovelace', company: 'Analytical Engines Ltd', email: 'ada@engines.example', phone: '+44 20 7946 0001', tags: ['vip', 'newsletter'], address: { city: 'London', country: 'GB' } },
  { id: '2', name: 'Grace Hopper', company: 'Compiler Works', email: 'grace@compiler.example', phone: '+1 202 555 0102', tags: ['newsletter'], address: { city: 'Arlington', country: 'US' } },
  { id: '3', name: 'Katherine Johnson', company: 'Orbital Data', email: 'kj@orbital.example', phone: '+1 757 555 0103', tags: ['enterprise', 'vip'], address: { city: 'Hampton', country: 'US' } },
  { id: '4', name: 'Alan Turing', company: 'Bletchley Analytics', email: 'alan@bletchley.example', phone: '+44 1908 555 004', tags: ['trial'], address: { city: 'Milton Keynes', country: 'GB' } },
  { id: '5', name: 'Hedy Lamarr', company: 'Frequency Hop GmbH', email: 'hedy@fhss.example', phone: '+43 1 555 0105', tags: ['newsletter', 'trial'], address: { city: 'Vienna', country: 'AT' } },
  { id: '6', name: 'Margaret Hamilton', company: 'Apollo Guidance', email: 'mh@apollo.example', phone: '+1 617 555 0106', tags: ['enterprise'], address: { city: 'Cambridge', country: 'US' } },
  { id: '7', name: 'Edsger Dijkstra', company: 'Shortest Path BV', email: 'ewd@paths.example', phone: '+31 40 555 0107', tags: ['churn-risk'], address: { city: 'Eindhoven', country: 'NL' } },
  { id: '8', name: 'Radia Perlman', company: 'Spanning Tree, Inc.', email: 'radia@stp.example', phone: '+1 408 555 0108', tags: ['vip', 'enterprise'], address: { city: 'Redwood City', country: 'US' } },
];

export interface Asset {
  readonly id: string;
  readonly title: string;
  readonly kind: 'image' | 'pdf' | 'article' | 'video';
  readonly url: string;
  readonly tags: readonly string[];
}

export const ASSETS: readonly Asset[] = [
  { id: 'a1', title: 'Spring launch banner', kind: 'image', url: 'https://cdn.example/assets/a1.png', tags: ['launch'] },
  { id: 'a2', title: 'Product one-pager', kind: 'pdf', url: 'https://cdn.example/assets/a2.pdf', tags: ['sales'] },
  { id: 'a3', title: 'Customer story: Orbital Data', kind: 'article', url: 'https://cdn.example/assets/a3.html', tags: ['case-study', 'enterprise'] },
  { id: 'a4', title: 'Webinar recording: least privilege for agents', kind: 'video', url: 'https://cdn.example/assets/a4.mp4', tags: ['webinar'] },
  { id: 'a5', title: 'Pricing sheet 2026', kind: 'pdf', url: 'https://cdn.example/assets/a5.pdf', tags: ['sales', 'pricing'] },
];

export interface Ticket {
  readonly id: string;
  readonly subject: string;
  readonly customer: string;
  readonly queue: string;
  readonly status: 'open' | 'pending' | 'closed';
  readonly priority: 'low' | 'normal' | 'high';
  readonly opened: string;
}

export const TICKETS: readonly Ticket[] = [
  { id: '1', subject: 'Refund for duplicate charge', customer: 'Grace Hopper', queue: 'billing', status: 'open', priority: 'high', opened: '2026-11-18' },
  { id: '2', subject: 'Cannot log in after password reset', customer: 'Alan Turing', queue: 'technical', status: 'open', priority: 'normal', opened: '2026-11-19' },
  { id: '3', subject: 'Invoice address change', customer: 'Hedy Lamarr', queue: 'billing', status: 'pending', priority: 'low', opened: '2026-11-20' },
  { id: '4', subject: 'API rate limits', customer: 'Radia Perlman', queue: 'technical', status: 'open', priority: 'normal', opened: '2026-11-21' },
  { id: '5', subject: 'Cancel my trial', customer: 'Edsger Dijkstra', queue: 'general', status: 'closed', priority: 'low', opened: '2026-11-12' },
];

/** The standard reply scripts, the only replies a support agent may send. `{customer}` is filled in. */
export const SCRIPTS: ReadonlyMap<string, string> = new Map([
  ['greeting', 'Hello {customer}, thank you for contacting us. We are looking into your request.'],
  ['refund-status', 'Hello {customer}, your refund is being processed and will arrive within 5 business days.'],
  ['escalate', 'Hello {customer}, we have escalated your request to a specialist who will contact you shortly.'],
]);

/** Ticketing queue configuration, as `PUT /config` replaces it. */
export interface QueueConfig {
  readonly queues: readonly string[];
  readonly autoCloseDays: number;
  readonly defaultPriority: 'low' | 'normal' | 'high';
}

export const QUEUE_CONFIG: QueueConfig = { queues: ['billing', 'technical', 'general'], autoCloseDays: 7, defaultPriority: 'normal' };

export interface Article {
  readonly id: string;
  readonly title: string;
  readonly tags: readonly string[];
  readonly body: string;
}

export const ARTICLES: readonly Article[] = [
  { id: 'kb-1', title: 'Resetting a password', tags: ['account'], body: 'Use the "Forgot password" link; the reset link is valid for 30 minutes.' },
  { id: 'kb-2', title: 'Refund policy', tags: ['billing'], body: 'Duplicate charges are refunded within 5 business days of the request.' },
  { id: 'kb-3', title: 'API rate limits', tags: ['technical'], body: 'The default limit is 100 requests per minute per key; enterprise plans can raise it.' },
  { id: 'kb-4', title: 'Changing the invoice address', tags: ['billing'], body: 'Account owners can change the invoice address under Billing > Details.' },
];

export interface Report {
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly sql: string;
}

export const REPORTS: readonly Report[] = [
  { id: 'r1', title: 'Revenue by region', description: 'Total sales per region.', sql: 'SELECT region, ROUND(SUM(amount), 2) AS revenue FROM sales GROUP BY region ORDER BY region' },
  { id: 'r2', title: 'Daily ticket backlog', description: 'Opened minus closed tickets per day, all queues.', sql: 'SELECT day, SUM(opened) - SUM(closed) AS backlog FROM tickets_daily GROUP BY day ORDER BY day' },
  { id: 'r3', title: 'Top products', description: 'Orders and revenue per product.', sql: 'SELECT product, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue FROM sales GROUP BY product ORDER BY revenue DESC' },
];

export type SalesRow = readonly [day: string, region: string, product: string, amount: number, customerEmail: string];
export type TicketsDailyRow = readonly [day: string, queue: string, opened: number, closed: number];

const REGIONS = ['north', 'south', 'east', 'west'] as const;
const PRODUCTS = ['starter', 'team', 'enterprise'] as const;
const QUEUES = ['billing', 'technical', 'general'] as const;
const SALES_ROWS = 200;
const TICKET_DAYS = 20;

/** A fixed linear congruential generator, so every run seeds the same numbers. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
}

function day(offset: number): string {
  return new Date(Date.UTC(2026, 9, 1 + offset)).toISOString().slice(0, 10);
}

function pick<T>(list: readonly T[], index: number): T {
  const value = list[index % list.length];
  if (value === undefined) throw new Error('pick from an empty list');
  return value;
}

/** `sales (day, region, product, amount, customer_email)`: 200 rows over October 2026. */
export function salesRows(): SalesRow[] {
  const next = generator(42);
  const rows: SalesRow[] = [];
  for (let i = 0; i < SALES_ROWS; i++) {
    const product = pick(PRODUCTS, Math.floor(next() * PRODUCTS.length));
    const amount = Math.round((50 + next() * 950) * 100) / 100;
    rows.push([day(i % 31), pick(REGIONS, i), product, amount, pick(CONTACTS, i).email]);
  }
  return rows;
}

/** `tickets_daily (day, queue, opened, closed)`: 20 days x 3 queues = 60 rows. */
export function ticketsDailyRows(): TicketsDailyRow[] {
  const next = generator(7);
  const rows: TicketsDailyRow[] = [];
  for (let d = 0; d < TICKET_DAYS; d++) {
    for (const queue of QUEUES) rows.push([day(d), queue, 5 + Math.floor(next() * 20), 3 + Math.floor(next() * 20)]);
  }
  return rows;
}
