// Express 4, installed beside Express 5 under this name for the adapter table; it ships no types.
declare module 'express4' {
  const express4: unknown
  export default express4
}
