// Express 4, installed beside Express 5 under this name for the adapter table. It ships no types:
// it is typed as Express 5, whose surface the adapter uses (app, json(), Router()) is the same.
declare module 'express4' {
  import express from 'express'
  export default express
}
