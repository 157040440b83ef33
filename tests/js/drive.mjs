// Drives one npm client through one chat against convstore's /v1, as its docs show it used.
//   node drive.mjs <openai|ai> <plain|three|tool> <stream|whole>
// Env: BASE_URL (".../v1"), API_KEY. Prints, as JSON, what the client received and sent back:
//   {"answers": [{"content", "tool_calls": [{"id", "name", "arguments" (parsed)}]}, ...],
//    "tool_results": [{"tool_call_id", "content"}, ...]}
// one answer per call the client made, in order (tests/gateway/test_clients.py compares them
// with what was saved).
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import OpenAI from 'openai';
import { z } from 'zod';

const [client, chat, mode] = process.argv.slice(2);
const stream = mode === 'stream';
const { BASE_URL, API_KEY } = process.env;
const MODEL = process.env.MODEL ?? 'fake-model';
const PROMPTS = { plain: ['hello'], three: ['one', 'two', 'three'], tool: ['look up déjà vu'] };

const lookup = (q) => `result for ${q}`;

// ---------------------------------------------------------------- openai (npm)
const TOOLS = [{
  type: 'function',
  function: {
    name: 'lookup',
    description: 'Look something up',
    parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
  },
}];

async function openaiCall(sdk, messages, tools) {
  const body = { model: MODEL, messages, ...(tools ? { tools } : {}) };
  if (!stream) return (await sdk.chat.completions.create(body)).choices[0].message;
  const events = sdk.chat.completions.stream(body);
  for await (const _chunk of events) { /* the helper assembles the message */ }
  return events.finalMessage();
}

function openaiAnswer(message) {
  return {
    content: message.content ?? '',
    tool_calls: (message.tool_calls ?? []).map((c) => ({
      id: c.id, name: c.function.name, arguments: JSON.parse(c.function.arguments),
    })),
  };
}

async function driveOpenAI() {
  const sdk = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
  const answers = []; const toolResults = []; const messages = [];
  if (chat === 'tool') {
    messages.push({ role: 'user', content: PROMPTS.tool[0] });
    // The documented loop: the SDK's message goes back as it came, then each tool's result.
    for (let step = 0; step < 5; step += 1) {
      const message = await openaiCall(sdk, messages, TOOLS);
      answers.push(openaiAnswer(message));
      messages.push(message);
      if (!message.tool_calls?.length) break;
      for (const call of message.tool_calls) {
        const result = { role: 'tool', tool_call_id: call.id,
          content: lookup(JSON.parse(call.function.arguments).q) };
        messages.push(result);
        toolResults.push({ tool_call_id: result.tool_call_id, content: result.content });
      }
    }
    return { answers, tool_results: toolResults };
  }
  for (const prompt of PROMPTS[chat]) {
    messages.push({ role: 'user', content: prompt });
    const message = await openaiCall(sdk, messages);
    answers.push(openaiAnswer(message));
    messages.push(message);
  }
  return { answers, tool_results: toolResults };
}

// ------------------------------------------------ Vercel ai + @ai-sdk/openai-compatible
async function aiCall(options) {
  const base = { model: createOpenAICompatible({ name: 'convstore', baseURL: BASE_URL,
    apiKey: API_KEY })(MODEL), maxRetries: 0, ...options };
  if (!stream) return generateText(base);
  let failure;
  const result = streamText({ ...base, onError: ({ error }) => { failure = error; } });
  for await (const _text of result.textStream) { /* consumed as an app would */ }
  if (failure) throw failure;
  return { steps: await result.steps, response: await result.response };
}

function aiAnswers(steps) {
  return steps.map((step) => ({
    content: step.text,
    tool_calls: step.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, arguments: c.input })),
  }));
}

async function driveAI() {
  if (chat === 'tool') {
    const tools = {
      lookup: tool({
        description: 'Look something up',
        inputSchema: z.object({ q: z.string() }),
        execute: async ({ q }) => lookup(q),
      }),
    };
    const result = await aiCall({ tools, stopWhen: stepCountIs(5), prompt: PROMPTS.tool[0] });
    return {
      answers: aiAnswers(result.steps),
      tool_results: result.steps.flatMap((s) => s.toolResults.map((r) => ({
        tool_call_id: r.toolCallId, content: r.output,
      }))),
    };
  }
  const messages = []; const answers = [];
  for (const prompt of PROMPTS[chat]) {
    messages.push({ role: 'user', content: prompt });
    const result = await aiCall({ messages });
    answers.push(...aiAnswers(result.steps));
    messages.push(...result.response.messages); // the SDK's own assistant messages
  }
  return { answers, tool_results: [] };
}

const drivers = { openai: driveOpenAI, ai: driveAI };
process.stdout.write(`${JSON.stringify(await drivers[client]())}\n`);
