// A device's gate for control operations (fabric/volume/quiesce.ts): a pause waits for the I/O
// inside; one that gives up (pauseWithin) opens the gate again and leaves nothing that holds later ones.

import { Quiesce } from '../../fabric/volume/quiesce';

test('a pause that gives up on I/O stuck inside opens the gate again; the next pause waits for the I/O, and ends once it leaves', async () => {
  const gate = new Quiesce();
  expect(gate.enter()).toBeUndefined(); // an I/O that hangs
  expect(gate.busy).toBe(true);
  await expect(gate.pauseWithin(50, () => new Error('late'))).rejects.toThrow('late');
  expect(gate.paused).toBe(false);
  expect(gate.enter()).toBeUndefined(); // new I/O goes in at once
  gate.leave();

  let drained = false;
  const pause = gate.pause().then(() => (drained = true));
  const held = gate.enter(); // held at the closed gate
  expect(held).toBeInstanceOf(Promise);
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(drained).toBe(false);
  gate.leave(); // the stuck I/O ends
  await pause;
  expect(gate.busy).toBe(false);
  gate.resume();
  await held; // let in once the gate opens
  expect(gate.busy).toBe(true);
  gate.leave();
});

test('nested pauses: the gate opens when the last one resumes', async () => {
  const gate = new Quiesce();
  await gate.pause();
  await gate.pauseWithin(50, () => new Error('late'));
  gate.resume();
  expect(gate.paused).toBe(true);
  let entered = false;
  const held = gate.enter()!.then(() => (entered = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(entered).toBe(false);
  gate.resume();
  await held;
  expect(entered).toBe(true);
  gate.leave();
});
