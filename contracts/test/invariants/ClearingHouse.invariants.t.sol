// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {StdInvariant} from "forge-std/StdInvariant.sol";

import {TestToken} from "../../src/test-tokens/TestToken.sol";
import {HxBase} from "../helpers/HxBase.sol";
import {Handler} from "./Handler.sol";

/// @notice System invariants under random deposits, trades into debt, signed withdrawals, forced requests, payouts
///         under caps, a thief with the operator key, challenges, pauses, freezes, netted escapes and reclaims.
///
/// MUTATION CHECK (done by hand; re-run it after touching the ledger, the signature path or the escape maths).
/// Each mutation below was applied alone and the suite run; what failed is quoted.
///  1. Disable the `SignatureChecker` check in ClearingHouse._queueWithdrawals: `rogueWithdraw` gets a batch paying a
///     victim's balance to the thief accepted: "a batch paying an account's balance to the thief was accepted"
///     (invariant_nothingThatMustNeverHappenHappened; invariant_noPayoutWithoutSignature fails with it).
///  2. Skip `_spendOutflow` in ClearingHouse._payOut (pay = owed; done again after A-2's parts, 2026-12-05):
///     "USDC outflow above cap: ..." (invariant_outflowPerPeriodWithinCap, also run by the handler walk).
///  3. In EscapeHatch._basketShares use `net = owed` (debts not netted): "exit above net value"
///     (invariant_escapeExactlyOnceNetted, test_handlerWalk_reachesEveryPath).
///  4. Delete `_restoreLedgers(batchId, prevLedgers);` in ClearingHouse.challengeBatch: "claims - liabilities !=
///     holdings" and "an honest batch was refused: 0x6d5be171..." (SolvencyMismatch).
contract ClearingHouseInvariants is StdInvariant, HxBase {
    Handler internal handler;
    uint256 internal constant USDC_CAP = 20_000e6;
    uint256 internal constant WETH_CAP = 50e18;

    function setUp() public override {
        uint256 k;
        (alice, k) = makeAddrAndKey("alice");
        keyOf[alice] = k;
        (bob, k) = makeAddrAndKey("bob");
        keyOf[bob] = k;
        (carol, k) = makeAddrAndKey("carol");
        keyOf[carol] = k;
        usdc = new TestToken("USD Coin (test)", "USDC", 6);
        weth = new TestToken("Wrapped Ether (test)", "WETH", 18);
        tokens.push(address(usdc));
        tokens.push(address(weth));
        actors.push(alice);
        actors.push(bob);
        actors.push(carol);
        _deploy(tokens);
        vm.startPrank(address(timelock));
        ch.setOutflowCap(address(usdc), USDC_CAP);
        ch.setOutflowCap(address(weth), WETH_CAP);
        vm.stopPrank();
        uint256[] memory keys = new uint256[](3);
        keys[0] = keyOf[alice];
        keys[1] = keyOf[bob];
        keys[2] = keyOf[carol];
        handler = new Handler(ch, operator, guardian, watcher, actors, keys);
        bytes4[] memory selectors = new bytes4[](15);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.submitBatch.selector;
        selectors[2] = Handler.submitBatch.selector; // weight: batches are the common case
        selectors[3] = Handler.submitBatch.selector;
        selectors[4] = Handler.executePayouts.selector;
        selectors[5] = Handler.executePayouts.selector;
        selectors[6] = Handler.rogueWithdraw.selector;
        selectors[7] = Handler.rogueReassign.selector;
        selectors[8] = Handler.challenge.selector;
        selectors[9] = Handler.warpAndMaybeFreeze.selector;
        selectors[10] = Handler.requestForced.selector;
        selectors[11] = Handler.escape.selector;
        selectors[12] = Handler.forgeEscape.selector;
        selectors[13] = Handler.guardianActs.selector;
        selectors[14] = Handler.reclaim.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetContract(address(handler));
    }

    function _uncredited(address t) internal view returns (uint256) {
        uint256 credited = ch.ledger(t).credited;
        return vault.totalDeposited(t) - credited - vault.reclaimedTotal(t);
    }

    function invariant_nothingThatMustNeverHappenHappened() public view {
        assertFalse(handler.ghostBroken(), handler.ghostWhy());
    }

    /// Tokens reach the accounts only through what they authorised: signed withdrawals and forced requests (paid
    /// after the window), their exits and reclaims. The thief holding the operator key never receives anything.
    function invariant_noPayoutWithoutSignature() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            uint256 held;
            for (uint256 j; j < actors.length; ++j) {
                held += TestToken(t).balanceOf(actors[j]);
            }
            assertEq(
                held, handler.ghostPaidToActors(t), "tokens reached accounts without their authorisation"
            );
            assertEq(TestToken(t).balanceOf(handler.thief()), 0, "the thief got paid");
        }
    }

    /// Before a freeze, payouts of a token per outflow period never exceed its cap.
    function invariant_outflowPerPeriodWithinCap() public view {
        uint256 n = handler.periodCount();
        for (uint256 k; k < n; ++k) {
            uint256 p = handler.ghostPeriods(k);
            assertLe(handler.ghostCappedOut(address(usdc), p), USDC_CAP, "USDC outflow above cap");
            assertLe(handler.ghostCappedOut(address(weth), p), WETH_CAP, "WETH outflow above cap");
        }
    }

    /// Per asset, the last canonical batch's claims - liabilities == the accounts' holdings, and the vault's tokens
    /// cover exactly holdings + pending payouts + uncredited deposits + deferred payouts (nothing leaks).
    function invariant_claimsMinusLiabilitiesEqualsHoldings() public view {
        if (ch.frozen()) return;
        uint64 b = ch.lastBatchId();
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            if (b != 0) {
                assertEq(
                    handler.committedClaims(b, t) - handler.committedDebt(b, t),
                    ch.accountHoldings(t),
                    "claims - liabilities != holdings"
                );
            }
            assertEq(
                TestToken(t).balanceOf(address(vault)),
                ch.accountHoldings(t) + ch.pendingPayouts(t) + _uncredited(t) + vault.totalPendingPayout(t),
                "vault balance != holdings + pending + uncredited + deferred"
            );
        }
    }

    /// In escape mode each account exits once. In kind (no liabilities) it gets exactly its leaves; with
    /// liabilities it gets its net value at the escape batch's prices (less rounding), never more, and what its
    /// debts netted away stays for the others. Exits never exceed the holdings.
    function invariant_escapeExactlyOnceNetted() public view {
        if (!ch.frozen() || ch.escapeBatchId() == 0) return;
        uint64 e = ch.escapeBatchId();
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertLe(
                handler.ghostEscaped(t),
                handler.committedClaims(e, t) - handler.committedDebt(e, t),
                "exits above the holdings"
            );
            assertEq(hatch.escapedOut(t), handler.ghostEscaped(t));
        }
        for (uint256 j; j < actors.length; ++j) {
            address a = actors[j];
            uint256 n = handler.ghostEscapeCount(a);
            assertLe(n, 1, "exits once");
            if (n == 0) continue;
            assertTrue(hatch.escaped(a));
            if (!handler.ghostBasket()) {
                for (uint256 i; i < tokens.length; ++i) {
                    assertEq(
                        handler.ghostEscapedBy(tokens[i], a),
                        handler.committedLeaf(e, tokens[i], a),
                        "in kind"
                    );
                }
                continue;
            }
            (uint256 owed, uint256 owes) = handler.committedNet(e, a);
            uint256 net = owed > owes ? owed - owes : 0;
            uint256 got;
            uint256 slack;
            for (uint256 i; i < tokens.length; ++i) {
                address t = tokens[i];
                uint256 unit = 10 ** vault.decimalsOf(t);
                got += handler.ghostEscapedBy(t, a) * handler.committedPrice(e, t) * 1e18 / unit;
                slack += handler.committedPrice(e, t) * 1e18 / unit + 1; // one base unit per token of rounding
            }
            assertLe(got, net + slack, "exit above net value");
            assertGe(got + slack, net, "exit below net value");
        }
    }

    function invariant_insuranceFundOnlyViaBatchesAndTimelock() public view {
        for (uint256 i; i < tokens.length; ++i) {
            address t = tokens[i];
            assertLe(fund.expectedBalance(t), TestToken(t).balanceOf(address(fund)));
            if (!ch.frozen()) {
                assertEq(fund.expectedBalance(t), handler.ghostFund(t), "fund moved outside batches");
            }
        }
    }

    /// A fixed pseudo-random walk over the same handler (seeded, so deterministic) must reach every deep path the
    /// invariants are about: netted escapes, challenges, forced freezes, rogue batches, capped payouts.
    function test_handlerWalk_reachesEveryPath() public {
        uint256 basket;
        uint256 challenges;
        uint256 escapes;
        uint256 rogue;
        uint256 payouts;
        uint256 parts;
        for (uint256 run; run < 6; ++run) {
            uint256 snap = vm.snapshotState();
            uint256 r = uint256(keccak256(abi.encode("walk", run)));
            for (uint256 i; i < 120; ++i) {
                r = uint256(keccak256(abi.encode(r)));
                uint256 a = r % 100;
                if (a < 15) handler.deposit(r >> 8, r >> 16, r >> 24);
                else if (a < 45) handler.submitBatch(r >> 8, r >> 20, r >> 40, r >> 60, r >> 80, r >> 100);
                else if (a < 55) handler.executePayouts(r >> 8, r >> 16);
                else if (a < 58) handler.rogueWithdraw(r >> 8);
                else if (a < 61) handler.rogueReassign(r >> 8);
                else if (a < 64) handler.challenge(r >> 8, (r >> 9) % 2 == 0);
                else if (a < 68) handler.requestForced(r >> 8, r >> 16, r >> 24);
                else if (a < 70 || i < 90) handler.warpAndMaybeFreeze(r >> 8, i > 80 && (r >> 9) % 3 == 0);
                else if (a < 90) handler.escape(r >> 8);
                else handler.forgeEscape(r >> 8, r >> 16, uint8(r >> 24));
                if (i == 100) handler.warpAndMaybeFreeze(4 days, true);
            }
            basket += handler.ghostBasket() ? 1 : 0;
            challenges += handler.calls("challenge");
            escapes += handler.calls("escape");
            rogue += handler.calls("rogueReassign");
            payouts += handler.calls("execute");
            parts += handler.calls("execute part");
            invariant_nothingThatMustNeverHappenHappened();
            invariant_noPayoutWithoutSignature();
            invariant_escapeExactlyOnceNetted();
            invariant_outflowPerPeriodWithinCap();
            vm.revertToState(snap);
        }
        assertGt(basket, 0, "no netted (basket) escape reached");
        assertGt(challenges, 0, "no challenge reached");
        assertGt(escapes, 0, "no escape reached");
        assertGt(rogue, 0, "no rogue batch reached");
        assertGt(payouts, 0, "no payout reached");
        assertGt(parts, 0, "no payout above the whole cap paid in parts (audit A-2)");
    }

    function invariant_canonicalChain() public view {
        if (!ch.frozen()) assertEq(ch.lastBatchId(), handler.ghostBatches());
    }
}
