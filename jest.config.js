// Tests are compiled by `tsc` (npm run build) and run from dist/, so jest needs no TypeScript transform.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testTimeout: 120000,
  verbose: true,
};
