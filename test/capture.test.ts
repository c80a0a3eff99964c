import t from 'tap'
import { capturePayload, Redactor } from '../plugin/context/capture'

const redactor = new Redactor(new Set(['password', 'token']))
const capture = (text: string): { value: unknown, preview: string } => {
  const c = capturePayload(text, 'application/json; charset=utf-8', redactor, 10_000)!
  return { value: JSON.parse(c.value.json), preview: c.preview }
}

t.test('JSON naming no secret field is kept as it is, with a chat preview', async t => {
  t.same(capture('{"answer":"hi \\"there\\"","n":1}'), { value: { answer: 'hi "there"', n: 1 }, preview: 'hi "there"' })
  t.same(capture('[1,2]'), { value: [1, 2], preview: '[1,2]' })
})

t.test('secret fields are redacted in any case, however the key is spelled', async t => {
  t.same(capture('{"Password":"p1","ok":true}').value, { Password: '[REDACTED]', ok: true })
  t.same(capture('{"user":{"token" : "t1"}}').value, { user: { token: '[REDACTED]' } })
  // A key spelled with a \u escape is still the key "token" once parsed.
  t.same(capture('{"tok\\u0065n":"t2"}').value, { token: '[REDACTED]' })
})

t.test('no fields to redact: nothing is parsed', async t => {
  const none = new Redactor(new Set())
  t.equal(none.mayApply('{"password":"x"}'), false)
})
