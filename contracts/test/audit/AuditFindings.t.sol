// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {HxBase} from "../helpers/HxBase.sol";
import {TreeBuilder} from "../helpers/TreeBuilder.sol";

/// @notice Audit of the contracts (branch audit-contracts): attacks that SUCCEED against the current code, because
///         their fix is outside `contracts/src` (it ripples into the settlement process) or they are the residual
///         risk of a fix (A-1: a token without a price feed). Each test asserts today's behaviour, so it fails the
///         day the attack is closed: update it then. See docs/contracts.md, "Trust model" and "Known limits".
contract AuditFindingsTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    address internal thief;

    function setUp() public override {
        super.setUp();
        uint256 k;
        (thief, k) = makeAddrAndKey("thief");
        keyOf[thief] = k;
        actors.push(thief);
    }

    /// FINDING A-1 (high), RESIDUAL RISK (fixed for tokens with a price feed: AuditFixesTest.test_A1_*,
    /// PriceBoundsTest): prices are committed by the operator; a token WITHOUT a feed is checked by nothing but the
    /// range (0, 1e36]. A stolen operator key posts a batch whose every leaf, root and total is right (the published
    /// data rebuilds it, `settlement/audit.py` reports no difference: it rebuilds the asset states with the committed
    /// prices) and whose prices are skewed, then stops posting. The batch is final after 6 h, nobody had a reason to
    /// void it, and after the freeze period it is the escape batch. As soon as any liability exists (basket mode),
    /// exits are shared by value at those prices: the thief, holding a little WBTC priced at 1e36, exits (almost) the
    /// whole vault, uncapped (escapes are not subject to the outflow cap). Only the numeraire's price (USDC, 10^6) is
    /// pinned without a feed. A production deployment sets a feed on every other listed token.
    function test_FINDING_A1_residual_noFeed_skewedPricesStillTakeTheVault() public {
        _deposit(alice, address(usdc), 1_000_000e6);
        _deposit(carol, address(weth), 1e18);
        _deposit(thief, address(wbtc), 1e6); // 0.01 WBTC: worth 600 USDC at the honest price
        _submit(); // batch 1
        debt[address(usdc)][carol] = 100e6; // carol borrows 100 USDC against her WETH (cross-margin), bob lent it
        bal[address(usdc)][bob] += 100e6;
        _submit(); // batch 2, honest
        ClearingHouse.AssetState[] memory honest = _assets();

        // the thief, with the operator key: the same leaves, other prices (no feed on WETH or WBTC)
        priceOf[address(weth)] = 1;
        priceOf[address(wbtc)] = 1e36;
        _submit(); // batch 3: accepted
        ClearingHouse.AssetState[] memory skewed = _assets();
        for (uint256 i; i < honest.length; ++i) {
            assertEq(skewed[i].claimsRoot, honest[i].claimsRoot, "claims root unchanged");
            assertEq(skewed[i].claimsTotal, honest[i].claimsTotal);
            assertEq(skewed[i].liabilitiesRoot, honest[i].liabilitiesRoot, "liabilities root unchanged");
            assertEq(skewed[i].liabilitiesTotal, honest[i].liabilitiesTotal);
        }
        // ... and goes silent; after the freeze period anyone freezes, against batch 3 (final, never voided)
        _freeze();
        assertEq(ch.escapeBatchId(), 3);
        uint256[] memory got = _escape(thief);
        assertGt(got[0], 999_999e6, "the thief exits alice's USDC");
        assertGt(got[1], 0.999e18, "and carol's WETH");
        uint256[] memory a = _escape(alice);
        assertEq(a[0] + a[1] + a[2], 0, "alice exits nothing");
    }

    /// FINDING A-4 (low, DoS): any account whose withdrawal or forced request a batch carries can make the whole
    /// batch revert by front-running it: burn the withdrawal's nonce (`invalidateNonces`), or cancel the forced
    /// request the batch serves. Every account's settlement waits for the operator to rebuild the batch without
    /// it; repeated from many funded accounts on a chain with a public mempool, batches stall (a freeze needs 3
    /// days of it). The contracts cannot skip the item instead: the engine's tree already debited it.
    function test_FINDING_A4_frontRunningAccountRevertsTheWholeBatch() public {
        _deposit(alice, address(usdc), 1000e6);
        _deposit(bob, address(usdc), 1000e6);
        _submit();
        _withdraw(alice, address(usdc), 100e6);
        ClearingHouse.Batch memory b = _batch();
        vm.prank(alice); // sees the batch in the mempool
        ch.invalidateNonces(0, 1);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NonceAlreadyUsed.selector, alice, 0));
        vm.prank(operator);
        ch.submitBatch(b);

        delete pendingW;
        bal[address(usdc)][alice] += 100e6;
        vm.prank(bob);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 100e6, bob);
        _serve(rid, 100e6, bob, address(usdc), false);
        bal[address(usdc)][bob] -= 100e6;
        b = _batch();
        vm.prank(bob);
        hatch.cancelForcedWithdrawal(rid);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestCancelled.selector, rid));
        vm.prank(operator);
        ch.submitBatch(b);
        assertEq(ch.lastBatchId(), 1, "nothing settled");
    }
}
