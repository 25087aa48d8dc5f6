// Label values of agentgate_tool_calls_total: one per tools/call message, the tool's name when the
// backend's policy names it (a closed set), else `unknown`, so an agent cannot mint label values.
import type { RequestContext } from '../context.js';
import { UNKNOWN_LABEL } from '../telemetry/labels.js';

export function toolLabels(ctx: RequestContext): string[] {
  const call = ctx.mcp;
  if (call === null) return [];
  const tools = ctx.policy.backends.get(ctx.target?.backend ?? '')?.mcp?.tools;
  const labels: string[] = [];
  for (const m of call.messages) {
    if (m.method !== 'tools/call') continue;
    labels.push(m.tool !== null && tools?.has(m.tool) === true ? m.tool : UNKNOWN_LABEL);
  }
  return labels;
}
