// Seed data for the demo backends: contacts with personal fields, marketing assets, tickets,
// knowledge-base articles, BI reports, and deterministic rows for the BI tables.

export interface Contact {
  id: string;
  name: string;
  company: string;
  email: string;
  phone: string;
  tags: string[];
  address: { city: string; country: string };
}

export const CONTACTS: readonly Contact[] = [
  { id: '1', name: 'Ada Lovelace', company: 'Analytical Engines Ltd', email: 'ada@engines.example', phone: '+44 20 7946 0001', tags: ['vip', 'newsletter'], address: { city: 'London', country: 'GB' } },
  { id: '2', name: 'Grace Hopper', company: 'Compiler Works', email: 'grace@compiler.example', phone: '+1 202 555 0102', tags: ['newsletter'], address: { city: 'Arlington', country: 'US' } },
  { id: '3', name: 'Katherine Johnson', company: 'Orbital Data', email: 'kj@orbital.example', phone: '+1 757 555 0103', tags: ['enterprise', 'vip'], address: { city: 'Hampton', country: 'US' } },
  { id: '4', name: 'Alan Turing', company: 'Bletchley Analytics', email: 'alan@bletchley.example', phone: '+44 1908 555 004', tags: ['trial'], address: { city: 'Milton Keynes', country: 'GB' } },
  { id: '5', name: 'Hedy Lamarr', company: 'Frequency Hop GmbH', email: 'hedy@fhss.example', phone: '+43 1 555 0105', tags: ['newsletter', 'trial'], address: { city: 'Vienna', country: 'AT' } },
  { id: '6', name: 'Margaret Hamilton', company: 'Apollo Guidance', email: 'mh@apollo.example', phone: '+1 617 555 0106', tags: ['enterprise'], address: { city: 'Cambridge', country: 'US' } },
  { id: '7', name: 'Edsger Dijkstra', company: 'Shortest Path BV', email: 'ewd@paths.example', phone: '+31 40 555 0107', tags: ['churn-risk'], address: { city: 'Eindhoven', country: 'NL' } },
  { id: '8', name: 'Radia Perlman', company: 'Spanning Tree Inc', email: 'radia@stp.example', phone: '+1 408 555 0108', tags: ['vip', 'enterprise'], address: { city: 'Redwood City', country: 'US' } },
];

export const ASSETS = [
  { id: 'a1', title: 'Spring launch banner', kind: 'image', url: 'https://cdn.example/assets/a1.png', tags: ['launch'] },
  { id: 'a2', title: 'Product one-pager', kind: 'pdf', url: 'https://cdn.example/assets/a2.pdf', tags: ['sales'] },
  { id: 'a3', title: 'Customer story: Orbital Data', kind: 'article', url: 'https://cdn.example/assets/a3.html', tags: ['case-study'] },
  { id: 'a4', title: 'Webinar recording', kind: 'video', url: 'https://cdn.example/assets/a4.mp4', tags: ['webinar'] },
] as const;

export const TICKETS = [
  { id: '1', subject: 'Refund for duplicate charge', customer: 'Grace Hopper', queue: 'billing', status: 'open', opened: '2026-11-18' },
  { id: '2', subject: 'Cannot log in after password reset', customer: 'Alan Turing', queue: 'technical', status: 'open', opened: '2026-11-19' },
  { id: '3', subject: 'Invoice address change', customer: 'Hedy Lamarr', queue: 'billing', status: 'pending', opened: '2026-11-20' },
  { id: '4', subject: 'API rate limits', customer: 'Radia Perlman', queue: 'technical', status: 'open', opened: '2026-11-21' },
] as const;

/** The standard reply scripts support agents may send. */
export const SCRIPTS: Readonly<Record<string, string>> = {
  greeting: 'Hello {customer}, thank you for contacting us. We are looking into your request.',
  'refund-status': 'Hello {customer}, your refund is being processed and will arrive within 5 business days.',
  escalate: 'Hello {customer}, we have escalated your request to a specialist who will contact you shortly.',
};

export const ARTICLES = [
  { id: 'kb-1', title: 'Resetting a password', body: 'Use the "Forgot password" link; the reset link is valid for 30 minutes.' },
  { id: 'kb-2', title: 'Refund policy', body: 'Duplicate charges are refunded within 5 business days.' },
  { id: 'kb-3', title: 'API rate limits', body: 'The default limit is 100 requests per minute per key.' },
] as const;

export const REPORTS = [
  { id: 'r1', title: 'Revenue by region', sql: 'SELECT region, SUM(amount) AS revenue FROM sales GROUP BY region ORDER BY region' },
  { id: 'r2', title: 'Daily ticket backlog', sql: 'SELECT day, SUM(opened) - SUM(closed) AS backlog FROM tickets_daily GROUP BY day ORDER BY day' },
  { id: 'r3', title: 'Top products', sql: 'SELECT product, COUNT(*) AS orders, SUM(amount) AS revenue FROM sales GROUP BY product ORDER BY revenue DESC' },
] as const;

const REGIONS = ['north', 'south', 'east', 'west'];
const PRODUCTS = ['starter', 'team', 'enterprise'];
const QUEUES = ['billing', 'technical', 'general'];

/** SQL that creates and fills `sales` (200 rows) and `tickets_daily` (60 rows), deterministically. */
export function seedSql(): string {
  const statements = [
    'CREATE TABLE sales (day TEXT, region TEXT, product TEXT, amount REAL, customer_email TEXT);',
    'CREATE TABLE tickets_daily (day TEXT, queue TEXT, opened INTEGER, closed INTEGER);',
  ];
  let seed = 42;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const day = (n: number): string => new Date(Date.UTC(2026, 9, 1 + n)).toISOString().slice(0, 10);
  const sales: string[] = [];
  for (let i = 0; i < 200; i++) {
    const contact = CONTACTS[i % CONTACTS.length];
    sales.push(`('${day(i % 30)}','${REGIONS[i % 4]}','${PRODUCTS[Math.floor(next() * 3)]}',${(50 + Math.floor(next() * 950)).toFixed(2)},'${contact?.email ?? ''}')`);
  }
  statements.push(`INSERT INTO sales VALUES ${sales.join(',')};`);
  const daily: string[] = [];
  for (let i = 0; i < 20; i++) {
    for (const queue of QUEUES) daily.push(`('${day(i)}','${queue}',${5 + Math.floor(next() * 20)},${3 + Math.floor(next() * 20)})`);
  }
  statements.push(`INSERT INTO tickets_daily VALUES ${daily.join(',')};`);
  return statements.join('\n');
}
