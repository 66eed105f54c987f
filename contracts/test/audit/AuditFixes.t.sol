// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {Vault} from "../../src/Vault.sol";
import {HxPriceAggregator} from "../../src/oracle/HxPriceAggregator.sol";
import {HxBase} from "../helpers/HxBase.sol";

/// @notice Audit of the contracts (branch audit-contracts): attacks that succeeded against the audited code and are
///         fixed in `contracts/src`. Each test asserts the defence; the commit of the fix quotes its failure before.
contract AuditFixesTest is HxBase {
    /// FINDING A-3 (medium): a pause of the ClearingHouse stops the batches that credit deposits, not the credit
    /// period (1 day, the same as a pause). A deposit the engine credited just before the guardian paused became
    /// reclaimable while batches were still paused: its depositor spent it inside the engine (here: lost it to
    /// carol, its accomplice) and took it back on chain, and the operator could not have credited it in between.
    /// The engine's books were then 500 USDC larger than the vault's. Fixed: a pause in force after the deposit
    /// adds `maxPause` to its credit period (the operator always gets an unpaused stretch to credit it).
    function test_A3_pauseNeverOpensAReclaimTheOperatorCouldNotPrevent() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        uint48 id = _deposit(bob, address(usdc), 500e6); // the engine credits it after N confirmations ...
        uint64 at = uint64(block.timestamp);
        vm.warp(block.timestamp + 1 minutes);
        vm.prank(guardian);
        ch.pause(); // ... but no batch can carry it on chain for a day
        bal[address(usdc)][bob] = 0; // bob loses it to carol inside the engine
        bal[address(usdc)][carol] = 500e6;
        vm.warp(uint256(at) + CREDIT_PERIOD);
        assertTrue(ch.paused(), "batches still paused");
        vm.expectRevert(
            abi.encodeWithSelector(
                Vault.DepositNotOverdue.selector, id, uint256(at) + CREDIT_PERIOD + MAX_PAUSE
            )
        );
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, bob);

        vm.warp(ch.pausedUntil());
        _submit(); // the first batch after the pause credits it
        vm.expectRevert(abi.encodeWithSelector(Vault.DepositWasCredited.selector, id));
        vm.prank(bob);
        vault.reclaimDeposit(id, address(usdc), 500e6, at, bob);
        assertEq(ch.accountHoldings(address(usdc)), 1500e6, "the books match the engine");
        assertEq(usdc.balanceOf(bob), 0);
    }

    /// A-3, the other side: the extension is bounded, so an operator that keeps posting without crediting a deposit
    /// made before a pause still loses it to its depositor (finding 3 of issue #15 still holds).
    function test_A3_depositStillReclaimableAfterTheExtendedPeriod() public {
        _deposit(alice, address(usdc), 1000e6);
        _submit();
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        vm.prank(guardian);
        ch.pause();
        vm.warp(ch.pausedUntil());
        for (uint256 i; i < 3; ++i) {
            _submit(); // credits nothing new
            vm.warp(block.timestamp + 8 hours);
        }
        vm.warp(uint256(at) + CREDIT_PERIOD + MAX_PAUSE);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        assertEq(usdc.balanceOf(dave), 77e6);
        assertFalse(ch.frozen());
    }

    /// A-3: with no pause after the deposit, the credit period is unchanged.
    function test_A3_noPause_creditPeriodUnchanged() public {
        vm.prank(guardian);
        ch.pause();
        vm.warp(ch.pausedUntil() + 1); // a pause that ended before the deposit does not count
        uint48 id = _depositUncredited(dave, address(usdc), 77e6);
        uint64 at = uint64(block.timestamp);
        vm.warp(uint256(at) + CREDIT_PERIOD - 1);
        vm.expectRevert(
            abi.encodeWithSelector(Vault.DepositNotOverdue.selector, id, uint256(at) + CREDIT_PERIOD)
        );
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        vm.warp(uint256(at) + CREDIT_PERIOD);
        vm.prank(dave);
        vault.reclaimDeposit(id, address(usdc), 77e6, at, dave);
        assertEq(usdc.balanceOf(dave), 77e6);
    }

    /// FINDING A-1 (high): a stolen operator key posted a batch identical to the honest one but for its prices (its
    /// 0.01 WBTC at 1e36), went silent, and after the freeze exited nearly the whole vault through basket exits.
    /// Before the fix: `assertGt(got[0], 999_999e6, "the thief exits alice's USDC")` held, see the residual test
    /// `AuditFindingsTest.test_FINDING_A1_residual_noFeed_skewedPricesStillTakeTheVault`. Fixed: with a feed on WETH
    /// and WBTC (set by governance) a price more than 2% from the fresh feed is refused, and USDC is pinned; the
    /// escape batch is the last honest one and every account exits its own value.
    function test_A1_skewedPricesInEscapeBatch_refusedWithAFeed() public {
        HxPriceAggregator wethFeed = new HxPriceAggregator(8, "ETH / USD", address(this));
        HxPriceAggregator wbtcFeed = new HxPriceAggregator(8, "BTC / USD", address(this));
        _governance(
            address(ch), abi.encodeCall(ch.setPriceFeed, (address(weth), address(wethFeed), 20_000, 1 hours))
        );
        _governance(
            address(ch), abi.encodeCall(ch.setPriceFeed, (address(wbtc), address(wbtcFeed), 20_000, 1 hours))
        );
        wethFeed.submit(3000e8);
        wbtcFeed.submit(60_000e8);
        (address thief, uint256 key) = makeAddrAndKey("thief");
        keyOf[thief] = key;
        actors.push(thief);
        _deposit(alice, address(usdc), 1_000_000e6);
        _deposit(carol, address(weth), 1e18);
        _deposit(thief, address(wbtc), 1e6); // 0.01 WBTC: 600 USDC
        _submit(); // batch 1
        debt[address(usdc)][carol] = 100e6; // carol borrows 100 USDC against her WETH, bob lent it
        bal[address(usdc)][bob] += 100e6;
        _submit(); // batch 2, honest

        // the thief, with the operator key: the same leaves, other prices
        priceOf[address(wbtc)] = 1e36;
        _submitReverts(
            abi.encodeWithSelector(
                ClearingHouse.PriceDeviatesFromFeed.selector, address(wbtc), 1e36, 60_000e6
            )
        );
        priceOf[address(wbtc)] = 60_000e6;
        priceOf[address(weth)] = 1;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.PriceDeviatesFromFeed.selector, address(weth), 1, 3000e6)
        );
        priceOf[address(weth)] = 3000e6;
        priceOf[address(usdc)] = 1;
        _submitReverts(
            abi.encodeWithSelector(ClearingHouse.NumerairePriceNotPinned.selector, address(usdc), 1)
        );
        priceOf[address(usdc)] = 1e6;
        // once the feeds are stale, the only price left is the last one (no skew either)
        vm.warp(block.timestamp + 2 hours);
        priceOf[address(wbtc)] = 60_001e6;
        _submitReverts(
            abi.encodeWithSelector(
                ClearingHouse.PriceFeedUnavailable.selector, address(wbtc), 60_001e6, 60_000e6
            )
        );
        priceOf[address(wbtc)] = 60_000e6;

        // the thief goes silent: the escape batch is honest batch 2
        _freeze();
        assertEq(ch.escapeBatchId(), 2);
        uint256[] memory got = _escape(thief);
        uint256 worth = got[0] + got[1] * 3000 / 1e12 + got[2] * 60_000 / 1e2; // micro-USDC at the honest prices
        assertLe(worth, 600e6, "the thief exits at most its 600 USDC");
        assertGt(worth, 599e6);
        uint256[] memory a = _escape(alice);
        assertGt(a[0] + a[1] * 3000 / 1e12 + a[2] * 60_000 / 1e2, 999_999e6, "alice exits her value");
    }

    /// FINDING A-2 (medium, DoS): one account holding more than a day's outflow cap of a token could end the
    /// exchange at a time of its choosing. Its forced request must be served in full (a short serve needs a proof
    /// that its leaf is 0), a single payout above the cap could never execute (every period refused it), and
    /// governance cannot raise the cap within the forced-withdrawal period (its delay floor is longer). So the
    /// request was overdue with certainty and anyone froze, when they liked (which also picked the escape batch).
    /// Before the fix: `OutflowCapExceeded(usdc, 10000e6, 2500e6)` every day, then `freezeForUnservedRequest`
    /// froze it. Fixed: a payout larger than the whole cap is paid in parts, what the cap leaves each period, and
    /// a forced request counts as paid from its first part on.
    function test_A2_forcedRequestAboveTheCap_isPaidInPartsAndFreezesNothing() public {
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 2500e6)));
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(usdc), 1000e6);
        _submit();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 10_000e6, alice);
        _serve(rid, 10_000e6, alice, address(usdc), false);
        bal[address(usdc)][alice] = 0;
        _submit();
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ch.executePayouts(2, p, 1); // the first part: the whole cap of this period
        assertEq(usdc.balanceOf(alice), 2500e6);
        assertTrue(hatch.isForcedRequestSettled(rid), "being paid: settled for the freeze");
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 7500e6, 0)
        );
        ch.executePayouts(2, p, 1); // nothing left this period
        vm.warp(block.timestamp + FORCED_PERIOD);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestSettled.selector, rid));
        hatch.freezeForUnservedRequest(rid, 2);
        for (uint256 d; d < 3; ++d) {
            vm.warp(block.timestamp + OUTFLOW_PERIOD);
            ch.executePayouts(2, p, 1);
        }
        assertEq(usdc.balanceOf(alice), 10_000e6, "paid in full, in four parts");
        assertEq(ch.payoutPartPaid(2), 0);
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.NothingToExecute.selector, 2));
        ch.executePayouts(2, p, 1);
        assertFalse(ch.frozen());
        _submit(); // the books still add up: the next batch is accepted
    }

    /// A-2's fix for signed withdrawals: one above the whole cap is paid in parts too (it blocked every later
    /// payout of its batch for ever), and the payouts after it wait for it; one within the cap that does not fit
    /// in what is left of the period still waits whole, as before.
    function test_A2_withdrawalAboveTheCap_isPaidInParts_andThoseAfterItFollow() public {
        _governance(address(ch), abi.encodeCall(ClearingHouse.setOutflowCap, (address(usdc), 1000e6)));
        _deposit(alice, address(usdc), 3000e6);
        _deposit(bob, address(usdc), 1000e6);
        _submit();
        _withdraw(alice, address(usdc), 2500e6);
        _withdraw(bob, address(usdc), 600e6);
        _submit();
        ClearingHouse.Payout[] memory p = _payoutsOf(2);
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ch.executePayouts(2, p, 2);
        assertEq(usdc.balanceOf(alice), 1000e6);
        assertEq(usdc.balanceOf(bob), 0, "bob's waits behind alice's");
        assertEq(ch.payoutPartPaid(2), 1000e6);
        vm.warp(block.timestamp + OUTFLOW_PERIOD);
        ch.executePayouts(2, p, 2);
        assertEq(usdc.balanceOf(alice), 2000e6);
        vm.warp(block.timestamp + OUTFLOW_PERIOD);
        // alice's last 500 fit; bob's 600 (within the cap) then waits whole for the next period
        vm.expectRevert(
            abi.encodeWithSelector(ClearingHouse.OutflowCapExceeded.selector, address(usdc), 600e6, 500e6)
        );
        ch.executePayouts(2, p, 2);
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(alice), 2500e6);
        assertEq(ch.payoutPartPaid(2), 0);
        vm.warp(block.timestamp + OUTFLOW_PERIOD);
        ch.executePayouts(2, p, 1);
        assertEq(usdc.balanceOf(bob), 600e6);
        _submit();
    }
}
