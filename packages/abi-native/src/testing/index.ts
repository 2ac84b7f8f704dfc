// Real C plugins for tests: compile them, and lay them out as an engines folder.
export { buildTestPlugin, libraryFileName } from './build.js';
export type { BuildTestPluginOptions, TestPluginName } from './build.js';
export { installTestPlugin } from './install.js';
export type { InstallTestPluginOptions } from './install.js';
