// The messages between the node and an engine host process (engine-host.ts, host-main.ts). They travel over
// Node's IPC channel with the structured-clone ("advanced") serialization. Tokens do not: the plugin's threads
// write them to the token pipe (the host's fd 4) as frames the node reads directly (token-frames.ts).
import type {
  EmbedRequest,
  EngineCapability,
  EngineErrorCode,
  EngineInfo,
  EngineInitConfig,
  GenerateRequest,
  GenerateResult,
  LoadProgress,
  ModelLoadParams,
} from './types.js';

/** The engine host's file descriptor of the token pipe. */
export const TOKEN_PIPE_FD = 4;

/** A call the node makes and the host answers with a HostReply of the same id. */
export type HostCall =
  | { call: 'open'; id: number; path: string; expectedId: string | undefined; allowNetwork: boolean }
  | { call: 'init'; id: number; config: EngineInitConfig }
  | { call: 'loadModel'; id: number; modelId: string; params: ModelLoadParams }
  | { call: 'unloadModel'; id: number; modelId: string }
  | { call: 'estimateVram'; id: number; params: ModelLoadParams }
  | { call: 'vramUsed'; id: number }
  | { call: 'modelStats'; id: number; modelId: string }
  | { call: 'embed'; id: number; request: EmbedRequest }
  | { call: 'shutdown'; id: number }
  | { call: 'close'; id: number };

/** Generations are not calls: their tokens and ends come back on the token pipe. */
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

export type HostMessage =
  | { reply: number; value?: unknown; error?: WireError }
  /** Sent while generations are in flight: plugins' token callbacks so far, polls included. */
  | { progress: number }
  /** How far the model load of call `loading` has got. */
  | { loading: number; progress: LoadProgress }
  /** A generation refused before it reached the plugin (so nothing of it comes on the token pipe). */
  | { generation: number; end: { result: GenerateResult } | { error: WireError } };
