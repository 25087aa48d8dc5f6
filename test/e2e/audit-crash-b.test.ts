// Issue 11: the audit trail is write-ahead for what clients see. A real gateway process under
// 64-connection load is killed with SIGKILL at random moments; every request whose response head
// the client received has its line in the file, and the chain verifies each time. The suite's 20
// kills are split over four files (this is the 2nd five) so each stays well inside tap's timeout.
import t from 'tap';
import { crashDrill } from '../helpers/audit-crash.js';

t.test('5 kill -9 under 64-connection load (2nd of 4): no answered request without its line', (t) => crashDrill(t, 5, 1));
