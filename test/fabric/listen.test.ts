// Addresses as weftd hands them to gRPC and names them in errors: an IPv6 address in brackets,
// else it would be read as a host without a port (the CSI controller reached other nodes so).

import { hostPort } from '../../fabric/listen';
import { reachableAddress } from '../../fabric/api/node-info';

test('hostPort brackets IPv6 addresses only', () => {
  expect(hostPort('fd00::5', 10810)).toBe('[fd00::5]:10810');
  expect(hostPort('::1', 1)).toBe('[::1]:1');
  expect(hostPort('127.0.0.11', 10810)).toBe('127.0.0.11:10810');
  expect(hostPort('node-a.example', 10810)).toBe('node-a.example:10810');
});

test('a wildcard listen address is reached on loopback', () => {
  expect(reachableAddress('0.0.0.0', 5)).toBe('127.0.0.1:5');
  expect(reachableAddress('::', 5)).toBe('[::1]:5');
  expect(reachableAddress('fd00::5', 5)).toBe('[fd00::5]:5');
});
