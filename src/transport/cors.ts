/**
 * CORS for browser clients (gRPC-Web and Connect from a page on another
 * origin), with the `cors` middleware and Connect's lists of the headers
 * its protocols send and read. Only the listed origins (or every origin,
 * with "*") get CORS headers; preflights are answered here and never reach
 * a handler. Credentials travel in the `authorization` header, never in
 * cookies, so no Access-Control-Allow-Credentials is sent. Native gRPC (the
 * lean path) is not a browser protocol and is untouched.
 */
import { cors as connectCors } from "@connectrpc/connect";
import cors from "cors";
import type { RequestHandler } from "./listener.js";

/** How long browsers may cache a preflight answer (seconds). */
const PREFLIGHT_MAX_AGE_S = 7200;

/** `handler` behind CORS for `origins` ("*" = any); no origins = `handler` itself. */
export function withCors(handler: RequestHandler, origins: readonly string[]): RequestHandler {
  if (origins.length === 0) return handler;
  const middleware = cors({
    origin: origins.includes("*") ? "*" : [...origins],
    // POST only: no method is declared side-effect free, so Connect's GET is not served.
    methods: ["POST"],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization"],
    exposedHeaders: [...connectCors.exposedHeaders],
    maxAge: PREFLIGHT_MAX_AGE_S,
    optionsSuccessStatus: 204,
    preflightContinue: false,
  });
  return (req, res) => {
    middleware(req as cors.CorsRequest, res as never, () => handler(req, res));
  };
}
