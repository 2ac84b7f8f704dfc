import { setImmediate } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { WriteTurns } from './write-turns.js';

describe('WriteTurns', () => {
  it('admits at most its number of writes per event-loop turn, the longest waiting first', async () => {
    const turns = new WriteTurns(2);
    const admitted: string[] = [];
    const write = async (name: string) => {
      const turn = turns.reserve();
      if (turn) await turn;
      admitted.push(name);
    };
    const writes = ['a', 'b', 'c', 'd', 'e'].map(write);
    await Promise.resolve();
    expect(admitted).toEqual(['a', 'b']);
    await setImmediate();
    expect(admitted).toEqual(['a', 'b', 'c', 'd']);
    await setImmediate();
    expect(admitted).toEqual(['a', 'b', 'c', 'd', 'e']);
    await Promise.all(writes);
  });

  it('lets a write through at once when the turn has room', () => {
    expect(new WriteTurns(1).reserve()).toBeUndefined();
  });
});
