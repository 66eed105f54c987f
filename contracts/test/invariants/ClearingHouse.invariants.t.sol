// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {StdInvariant} from "forge-std/StdInvariant.sol";

import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {HxBase} from "../helpers/HxBase.sol";
import {Handler} from "./Handler.sol";

/// @notice System invariants under random deposits, batches, pauses, governance, freezes and exits.
///
/// MUTATION CHECK (done by hand; re-run it after touching the ledger):
///  1. Delete `_ledger[token].debits += SafeCast.toUint128(amount);` in ClearingHouse.escapeWithdraw.
///     The vault then pays an exit without the books knowing. `invariant_vaultAccountingExact` and
///     `invariant_vaultCoversCommittedAndPending` fail at the first honest exit after a freeze (the vault's
///     balance drops below accountHoldings + pending + uncredited deposits):
///     "[FAIL: vault covers accounts + pending + uncredited: a < b]".
///  2. Delete `escaped[msg.sender][token] = true;` in ClearingHouse.escapeWithdraw. The exit is no longer
///     recorded, so the leaf could be exited again; `invariant_exitsExactlyOnce` fails (observed: its
///     `assertTrue(ch.escaped(a, t))`, or "exits once" when the handler's repeat exit lands first).
///  3. Delete `holdings[i] -= w.amount;` in ClearingHouse._applyWithdrawals. Every honest batch with a
///     withdrawal now reverts with TotalMismatch (selector 0x29889526; the engine committed the smaller
///     total): every invariant fails through fail_on_revert (observed), and a batch that lied by the
///     withdrawn amount would be accepted.
contract ClearingHouseInvariants is StdInvariant, HxBase {
    Handler internal handler;

    function setUp() public override {
        usdc = new TestToken("USD Coin (test)", "USDC", 6);
        weth = new TestToken("Wrapped Ether (test)", "WETH", 18);
        tokens.push(address(usdc));
        tokens.push(address(weth));
        actors.push(alice);
        actors.push(bob);
        actors.push(carol);
        _deploy(tokens);
        handler = new Handler(ch, timelock, operator, guardian, governor, actors, TIMELOCK_DELAY);
        bytes4[] memory selectors = new bytes4[](10);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.submitBatch.selector;
        selectors[2] = Handler.submitBatch.selector; // weight: batches are the common case
        selectors[3] = Handler.warpAndMaybeFreeze.selector;
        selectors[4] = Handler.escape.selector;
        selectors[5] = Handler.forgeEscape.selector;
        selectors[6] = Handler.guardianActs.selector;
        selectors[7] = Handler.governanceUnpause.selector;
        selectors[8] = Handler.governanceFundWithdraw.selector;
        selectors[9] = Handler.reclaim.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    function _uncredited(address t) internal view returns (uint256) {
        return vault.totalDeposits(t) - vault.cumulativeDeposits(t, ch.lastCreditedDepositId())
            - handler.ghostReclaimed(t);
    }

    /// The vault's balance covers what accounts own, payouts waiting for a claim, and deposits not credited yet.
    function invariant_vaultCoversCommittedAndPending() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertGe(
                TestToken(t).balanceOf(address(vault)),
                ch.accountHoldings(t) + vault.totalPendingPayout(t) + _uncredited(t),
                "vault covers accounts + pending + uncredited"
            );
            if (!ch.frozen()) {
                assertEq(ch.accountHoldings(t), handler.committedTotal(t), "holdings == last committed total");
            }
        }
    }

    /// With no stray transfers in this run, the cover is exact: nothing leaks out unaccounted.
    function invariant_vaultAccountingExact() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertEq(
                TestToken(t).balanceOf(address(vault)),
                ch.accountHoldings(t) + vault.totalPendingPayout(t) + _uncredited(t),
                "vault balance == accounts + pending + uncredited"
            );
        }
    }

    function invariant_batchIdsIncreaseAndHashesChain() public view {
        assertFalse(handler.ghostChainBroken(), "chain broken");
        assertEq(ch.lastBatchId(), handler.ghostBatches());
        assertEq(ch.lastBatchHash(), handler.ghostLastHash());
    }

    function invariant_insuranceFundOnlyViaBatchesAndTimelock() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertEq(fund.expectedBalance(t), handler.ghostFund(t), "fund moved outside batches/timelock");
            assertEq(fund.expectedBalance(t), handler.fundModel(t), "engine's fund == on-chain fund");
            assertLe(fund.expectedBalance(t), TestToken(t).balanceOf(address(fund)));
        }
    }

    function invariant_exitsExactlyOnce() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            for (uint256 j; j < actors.length; ++j) {
                address a = actors[j];
                uint256 n = handler.ghostEscapeCount(t, a);
                assertLe(n, 1, "exits once");
                if (n == 1) {
                    assertEq(handler.ghostEscapedBy(t, a), handler.committed(t, a), "exit == proven leaf");
                    assertTrue(ch.escaped(a, t));
                }
            }
        }
    }

    function invariant_escapesNeverExceedTotals() public view {
        assertFalse(handler.ghostForgedSuccess(), "a forged exit succeeded");
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertEq(ch.escapedTotal(t), handler.ghostEscaped(t));
            assertLe(ch.escapedTotal(t), handler.committedTotal(t), "exits <= committed total");
        }
    }

    function invariant_guardianCanNeitherMoveFundsNorBlockExits() public view {
        assertFalse(handler.ghostGuardianMovedFunds(), "guardian moved funds or gained a role");
    }
}
