// Diagnostics channels (node:diagnostics_channel) the data plane publishes
// its objects on as they are made, for tools that watch a running proxy (an
// APM agent, the leak checks in the tests). Publishing is skipped while
// nobody subscribes, so they cost a property read per object.

import { channel } from 'node:diagnostics_channel'

/** `{ socket, localPort }`: a client connection accepted (HTTP/1.1; TLS once the handshake is done). */
export const clientConnectionChannel = channel('switchyard:client:connection')
/** `{ exchange, localPort }`: a client request whose head was read (HTTP/1.1 or HTTP/2). */
export const clientRequestChannel = channel('switchyard:client:request')
/** `{ attempt, origin }`: a request on its way to an instance. */
export const upstreamRequestChannel = channel('switchyard:upstream:request')
