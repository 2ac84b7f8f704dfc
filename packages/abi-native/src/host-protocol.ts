// The messages between the node and an engine host process (engine-host.ts, host-main.ts). They travel over
// Node's IPC channel with the structured-clone ("advanced") serialization, so typed arrays and plain objects
// cross as they are.
import type { EngineCapability, EngineErrorCode, EngineInfo, EngineInitConfig, GenerateRequest, GenerateResult, ModelLoadParams, TokenChunk } from './types.js';

/** A call the node makes and the host answers with a HostReply of the same id. */
export type HostCall =
  | { call: 'open'; id: number; path: string; expectedId: string | undefined; allowNetwork: boolean }
  | { call: 'init'; id: number; config: EngineInitConfig }
  | { call: 'loadModel'; id: number; modelId: string; params: ModelLoadParams }
  | { call: 'unloadModel'; id: number; modelId: string }
  | { call: 'estimateVram'; id: number; params: ModelLoadParams }
  | { call: 'vramUsed'; id: number }
  | { call: 'shutdown'; id: number }
  | { call: 'close'; id: number };

/** Generations are not calls: their chunks and ends come back as HostEvents. */
export type HostCommand =
  | HostCall
  | { call: 'generate'; generation: number; request: GenerateRequest }
  | { call: 'cancel'; generation: number };

/** An EngineError as it crosses the channel. */
export interface WireError {
  code: EngineErrorCode;
  message: string;
  engineCode?: number;
}

/** What `open` answers. */
export interface HostOpened {
  info: EngineInfo;
  capabilities: EngineCapability[];
  /** Whether the host could deny the plugin the network, and how (or why not). */
  network: { enforced: boolean; how: string };
}

/** Something that happened to a generation: a chunk of tokens, or its end. */
export type HostEvent =
  | { generation: number; chunk: TokenChunk }
  | { generation: number; end: { result: GenerateResult } | { error: WireError } };

export type HostMessage =
  | { reply: number; value?: unknown; error?: WireError }
  /** Every generation event of one turn of the host's event loop, in order. */
  | { events: HostEvent[]; progress: number }
  /** Sent while generations are in flight: plugins' token callbacks so far, polls included. */
  | { progress: number };
