// Drives Vercel's ai with @ai-sdk/openai's default provider, which calls the Responses API
// (POST /v1/responses), through one chat against convstore, as its docs show it used.
//   node drive_responses.mjs <two|tool> <stream|whole>
// Env: BASE_URL (".../v1"), API_KEY. Prints, as JSON, what the client received and sent back:
//   {"answers": [{"id" (resp_...), "content", "tool_calls": [{"id", "name", "arguments"}]}],
//    "tool_results": [{"call_id", "output"}]}
// one answer per call the client made, in order (tests/responses/test_responses_clients.py
// compares them with what was saved).
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const [chat, mode] = process.argv.slice(2);
const stream = mode === 'stream';
const { BASE_URL, API_KEY } = process.env;
const MODEL = process.env.MODEL ?? 'fake-model';
const PROMPTS = { two: ['one', 'two'], tool: ['look up déjà vu'] };

const openai = createOpenAI({ baseURL: BASE_URL, apiKey: API_KEY });
const tools = {
  lookup: tool({
    description: 'Look something up',
    inputSchema: z.object({ q: z.string() }),
    execute: async ({ q }) => `result for ${q}`,
  }),
};

async function call(messages) {
  const options = {
    model: openai(MODEL), // openai(id) is openai.responses(id)
    maxRetries: 0,
    messages,
    ...(chat === 'tool' ? { tools, stopWhen: stepCountIs(5) } : {}),
  };
  if (!stream) return generateText(options);
  let failure;
  const result = streamText({ ...options, onError: ({ error }) => { failure = error; } });
  for await (const _text of result.textStream) { /* consumed as an app would */ }
  if (failure) throw failure;
  return { steps: await result.steps, response: await result.response };
}

const answers = []; const toolResults = []; const messages = [];
for (const prompt of PROMPTS[chat]) {
  messages.push({ role: 'user', content: prompt });
  const result = await call(messages);
  for (const step of result.steps) {
    answers.push({
      id: step.response.id,
      content: step.text,
      tool_calls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, arguments: c.input })),
    });
    toolResults.push(...step.toolResults.map((r) => ({ call_id: r.toolCallId, output: r.output })));
  }
  messages.push(...result.response.messages); // the SDK's own assistant and tool messages
}
process.stdout.write(`${JSON.stringify({ answers, tool_results: toolResults })}\n`);
