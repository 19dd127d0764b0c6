// Lets Node load the original client's modules as its bundler did: an
// import of "./utils" finds "./utils.js". Loaded with --import; it
// registers itself as the resolve hook.
import { register } from "node:module";

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (specifier.startsWith(".") && !specifier.endsWith(".js")) return next(`${specifier}.js`, context);
    throw error;
  }
}

if (!process.env.EXTENSIONLESS_HOOK_LOADED) {
  process.env.EXTENSIONLESS_HOOK_LOADED = "1";
  register(import.meta.url);
}
