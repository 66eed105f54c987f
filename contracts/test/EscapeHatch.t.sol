// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ClearingHouse} from "../src/ClearingHouse.sol";
import {EscapeHatch} from "../src/EscapeHatch.sol";
import {SumTree} from "../src/libraries/SumTree.sol";
import {HxBase} from "./helpers/HxBase.sol";
import {MockSmartAccount} from "./helpers/MockSmartAccount.sol";
import {TreeBuilder} from "./helpers/TreeBuilder.sol";

contract EscapeHatchTest is HxBase {
    using TreeBuilder for TreeBuilder.Tree;

    function _seed() internal {
        _deposit(alice, address(usdc), 10_000e6);
        _deposit(bob, address(weth), 5e18);
        _deposit(carol, address(usdc), 2500e6);
        _submit();
    }

    // ------------------------------------------------------------------ in kind

    function test_escape_inKind_eachAccountOnce() public {
        _seed();
        _freeze();
        uint256[] memory got = _escape(alice);
        assertEq(got[0], 10_000e6);
        assertEq(_escape(bob)[1], 5e18);
        assertEq(_escape(carol)[0], 2500e6);
        assertEq(hatch.escapedOut(address(usdc)), 12_500e6);
        assertEq(usdc.balanceOf(address(vault)), 0);
        assertTrue(hatch.escaped(alice));

        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.AlreadyEscaped.selector, alice));
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
    }

    function test_escape_zeroLeavesMarkExited() public {
        _seed();
        _freeze();
        vm.expectEmit(address(hatch));
        emit EscapeHatch.Escaped(dave, dave, false);
        uint256[] memory got = _escape(dave);
        assertEq(got[0] + got[1] + got[2], 0);
        assertTrue(hatch.escaped(dave));
    }

    function test_escape_rejects() public {
        _seed();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(EscapeHatch.ExchangeNotFrozen.selector);
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        _freeze();
        vm.startPrank(alice);
        vm.expectRevert(EscapeHatch.ZeroAddress.selector);
        hatch.escape(a, c, l, address(0));
        c[0].amount += 1;
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.InvalidProof.selector, 0, SumTree.CLAIM));
        hatch.escape(a, c, l, alice);
        c[0].amount -= 1;
        ClearingHouse.AssetState[] memory wrong = _assets();
        wrong[0].claimsTotal += 1;
        vm.expectRevert(
            abi.encodeWithSelector(
                EscapeHatch.StateRootMismatch.selector, ch.lastStateRoot(), keccak256(abi.encode(wrong))
            )
        );
        hatch.escape(wrong, c, l, alice);
        EscapeHatch.LeafProof[] memory fewer = new EscapeHatch.LeafProof[](2);
        vm.expectRevert(EscapeHatch.ProofCountMismatch.selector);
        hatch.escape(a, fewer, l, alice);
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.InvalidProof.selector, 0, SumTree.CLAIM));
        vm.prank(bob); // bob cannot take alice's leaf
        hatch.escape(a, c, l, bob);
    }

    function test_escape_noFinalBatch_nothingToExit_depositsReclaimable() public {
        uint48 id = _depositUncredited(alice, address(usdc), 5e6);
        vm.warp(block.timestamp + FREEZE_PERIOD);
        ch.freeze(0);
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(EscapeHatch.NoEscapeRoot.selector);
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        vm.prank(alice);
        vault.reclaimDeposit(id, address(usdc), 5e6, uint64(block.timestamp - FREEZE_PERIOD), alice);
        assertEq(usdc.balanceOf(alice), 5e6);
    }

    /// The guardian pauses everything it can; freeze, exits, reclaims and claims all still work.
    function test_guardianCannotBlockExits() public {
        _seed();
        uint48 late = _depositUncredited(dave, address(weth), 1e18);
        uint64 at = uint64(block.timestamp);
        vm.startPrank(guardian);
        ch.pause();
        vault.pause();
        vm.stopPrank();
        _freeze();
        _escape(alice);
        _escape(bob);
        vm.prank(dave);
        vault.reclaimDeposit(late, address(weth), 1e18, at, dave);
        assertEq(weth.balanceOf(dave), 1e18);
        assertEq(usdc.balanceOf(alice), 10_000e6);
    }

    // ------------------------------------------------------------------ liabilities: netted, pro-rata exits

    function test_escape_basket_debtorExitsNetValue_creditorsGetTheRest() public {
        _crossMargin();
        _freeze();
        (uint256[] memory aPay, bool basket) = _exitAmounts(alice);
        assertTrue(basket);
        // alice: net 3,000 - 1,000 = 2,000 of 8,000 -> a quarter of each holding
        assertEq(aPay[0], 1250e6);
        assertEq(aPay[1], 0.25e18);
        uint256[] memory b = _escape(bob); // creditors first or last: same result
        assertEq(b[0], 3750e6);
        assertEq(b[1], 0.75e18);
        uint256[] memory a = _escape(alice);
        assertEq(a[0], 1250e6);
        assertEq(a[1], 0.25e18);
        assertEq(usdc.balanceOf(address(vault)), 0);
        assertEq(weth.balanceOf(address(vault)), 0);
    }

    function test_escape_basket_orderIndependent() public {
        _crossMargin();
        _freeze();
        uint256[] memory a = _escape(alice);
        uint256[] memory b = _escape(bob);
        assertEq(a[0], 1250e6);
        assertEq(b[0], 3750e6);
        assertEq(a[1] + b[1], 1e18);
    }

    /// A debtor whose liabilities exceed its claims at the committed prices exits nothing.
    function test_escape_basket_underwaterAccountExitsNothing() public {
        _crossMargin();
        priceOf[address(weth)] = 900e6; // the batch valued WETH at 900: alice's 1,000 USDC debt exceeds her WETH
        _submit();
        _freeze();
        uint256[] memory a = _escape(alice);
        assertEq(a[0] + a[1] + a[2], 0);
        assertTrue(hatch.escaped(alice));
        uint256[] memory b = _escape(bob);
        // bob's net 6,000 exceeds the pool's 5,900 (alice is 100 under water at these prices): his share is clamped
        // to everything left, including what alice's debt netted away
        assertEq(b[0], 5000e6);
        assertEq(b[1], 1e18);
    }

    function test_escape_basket_liabilityProofRequired() public {
        _crossMargin();
        _freeze();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        vm.expectRevert(EscapeHatch.ProofCountMismatch.selector);
        vm.prank(alice);
        hatch.escape(a, c, new EscapeHatch.LeafProof[](0), alice);
        l[0].amount = 0; // hide the debt
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.InvalidProof.selector, 0, SumTree.LIABILITY));
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
    }

    function _exitAmounts(address who) internal view returns (uint256[] memory pay, bool basket) {
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(who);
        return hatch.exitAmounts(who, _assets(), c, l);
    }

    // ------------------------------------------------------------------ forced withdrawals

    function _serve(uint256 rid, uint256 amount, uint256 requested, address who, address token) internal {
        _serve(rid, amount, who, token, amount < requested); // (a short serve proves the leaf)
    }

    function test_forced_servedInFull_paidAfterWindow_settled() public {
        _seed();
        vm.expectEmit(address(hatch));
        emit EscapeHatch.ForcedWithdrawalRequested(
            1, alice, address(usdc), 4000e6, dave, block.timestamp + FORCED_PERIOD
        );
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 4000e6, dave);
        bal[address(usdc)][alice] -= 4000e6;
        _serve(rid, 4000e6, 4000e6, alice, address(usdc));
        _submit();
        assertFalse(hatch.isForcedRequestSettled(rid), "served, not yet paid");
        _payOut();
        assertTrue(hatch.isForcedRequestSettled(rid));
        assertEq(usdc.balanceOf(dave), 4000e6);
        vm.warp(block.timestamp + FORCED_PERIOD);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestSettled.selector, rid));
        hatch.freezeForUnservedRequest(rid, 2);
    }

    /// The account holds less than it asked: the operator serves all of it and proves the leaf is now 0.
    function test_forced_shortServeNeedsZeroLeafProof() public {
        _seed();
        vm.prank(carol);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 9999e6, carol);
        bal[address(usdc)][carol] = 0;
        ClearingHouse.Batch memory b = _batch();
        b.withdrawals = new ClearingHouse.SignedWithdrawal[](0);
        b.forcedServes = new ClearingHouse.ForcedServe[](1);
        b.forcedServes[0] = ClearingHouse.ForcedServe(rid, 2500e6, 2, new SumTree.Node[](0));
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.ForcedShortServeUnproven.selector, rid));
        vm.prank(operator);
        ch.submitBatch(b);
        b.forcedServes[0].proof = _tree(address(usdc)).proof(0); // alice's leaf is not 0
        b.forcedServes[0].leafIndex = 0;
        vm.expectRevert(abi.encodeWithSelector(ClearingHouse.ForcedShortServeUnproven.selector, rid));
        vm.prank(operator);
        ch.submitBatch(b);
        _serve(rid, 2500e6, 9999e6, carol, address(usdc));
        _submit();
        _payOut();
        assertEq(usdc.balanceOf(carol), 2500e6);
        assertTrue(hatch.isForcedRequestSettled(rid));
    }

    /// A request from an account with nothing is settled by a zero serve with a proof of its zero leaf.
    function test_forced_zeroServe_settlesAtOnce() public {
        _seed();
        vm.prank(dave);
        uint256 rid = hatch.requestForcedWithdrawal(address(wbtc), 1e8, dave);
        _serve(rid, 0, 1e8, dave, address(wbtc));
        _submit();
        assertTrue(hatch.isForcedRequestSettled(rid));
    }

    function test_forced_rejects() public {
        _seed();
        vm.startPrank(alice);
        vm.expectRevert(EscapeHatch.NothingToWithdraw.selector);
        hatch.requestForcedWithdrawal(address(usdc), 0, alice);
        vm.expectRevert(EscapeHatch.ZeroDestination.selector);
        hatch.requestForcedWithdrawal(address(usdc), 1, address(0));
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.TokenNotListed.selector, address(0xbad)));
        hatch.requestForcedWithdrawal(address(0xbad), 1, alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1000e6, alice);
        vm.stopPrank();

        ClearingHouse.Batch memory b = _batch();
        b.forcedServes = new ClearingHouse.ForcedServe[](1);
        b.forcedServes[0] = ClearingHouse.ForcedServe(rid + 1, 0, 0, new SumTree.Node[](0));
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.UnknownRequest.selector, rid + 1));
        vm.prank(operator);
        ch.submitBatch(b);
        b.forcedServes[0] = ClearingHouse.ForcedServe(rid, 1001e6, 0, new SumTree.Node[](0));
        vm.expectRevert(
            abi.encodeWithSelector(EscapeHatch.ForcedServeExceedsRequest.selector, rid, 1001e6, 1000e6)
        );
        vm.prank(operator);
        ch.submitBatch(b);

        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.NotRequester.selector, rid));
        vm.prank(bob);
        hatch.cancelForcedWithdrawal(rid);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.NotClearingHouse.selector, address(this)));
        hatch.serveForced(rid, 0, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.NotClearingHouse.selector, address(this)));
        hatch.markPaid(rid);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.UnknownRequest.selector, 99));
        hatch.freezeForUnservedRequest(99, 1);

        // served once; a second serve and a cancel are refused
        bal[address(usdc)][alice] -= 1000e6;
        _serve(rid, 1000e6, 1000e6, alice, address(usdc));
        _submit();
        b = _batch();
        b.forcedServes = new ClearingHouse.ForcedServe[](1);
        b.forcedServes[0] = ClearingHouse.ForcedServe(rid, 1000e6, 0, new SumTree.Node[](0));
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.ForcedAlreadyServed.selector, rid));
        vm.prank(operator);
        ch.submitBatch(b);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.ForcedAlreadyServed.selector, rid));
        vm.prank(alice);
        hatch.cancelForcedWithdrawal(rid);

        // a cancelled request can be neither served nor cause a freeze
        vm.prank(bob);
        uint256 r2 = hatch.requestForcedWithdrawal(address(weth), 1e18, bob);
        vm.prank(bob);
        hatch.cancelForcedWithdrawal(r2);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestCancelled.selector, r2));
        vm.prank(bob);
        hatch.cancelForcedWithdrawal(r2);
        b = _batch();
        b.forcedServes = new ClearingHouse.ForcedServe[](1);
        b.forcedServes[0] = ClearingHouse.ForcedServe(r2, 1e18, 0, new SumTree.Node[](0));
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestCancelled.selector, r2));
        vm.prank(operator);
        ch.submitBatch(b);
        vm.warp(block.timestamp + FORCED_PERIOD);
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.RequestSettled.selector, r2));
        hatch.freezeForUnservedRequest(r2, 2);

        _freeze();
        vm.expectRevert(EscapeHatch.ExchangeFrozen.selector);
        vm.prank(alice);
        hatch.requestForcedWithdrawal(address(usdc), 1, alice);
    }

    /// One request cannot be served twice in the same batch (it is not canonical yet while it is submitted).
    function test_forced_servedTwiceInOneBatch_refused() public {
        _seed();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1000e6, alice);
        bal[address(usdc)][alice] -= 2000e6; // a batch debiting it twice
        _serve(rid, 1000e6, 1000e6, alice, address(usdc));
        _serve(rid, 1000e6, 1000e6, alice, address(usdc));
        ClearingHouse.Batch memory b = _batch();
        vm.expectRevert(abi.encodeWithSelector(EscapeHatch.ForcedAlreadyServed.selector, rid));
        vm.prank(operator);
        ch.submitBatch(b);
    }

    /// A serve in a batch that is then voided does not count: the request is unserved again.
    function test_forced_servedByVoidedBatch_isUnservedAgain() public {
        _seed();
        vm.prank(alice);
        uint256 rid = hatch.requestForcedWithdrawal(address(usdc), 1000e6, alice);
        bal[address(usdc)][alice] -= 1000e6;
        _serve(rid, 1000e6, 1000e6, alice, address(usdc));
        _submit();
        _challenge(guardian, 2);
        bal[address(usdc)][alice] += 1000e6;
        vm.warp(block.timestamp + FORCED_PERIOD);
        hatch.freezeForUnservedRequest(rid, 1);
        assertTrue(ch.frozen());
        assertEq(_escape(alice)[0], 10_000e6);
    }

    /// A smart account forces a withdrawal by calling the hatch itself.
    function test_forced_bySmartAccount() public {
        (address owner,) = makeAddrAndKey("owner");
        MockSmartAccount sa = new MockSmartAccount(owner);
        actors.push(address(sa));
        _deposit(address(sa), address(usdc), 300e6);
        _submit();
        vm.prank(owner);
        bytes memory ret = sa.execute(
            address(hatch), abi.encodeCall(EscapeHatch.requestForcedWithdrawal, (address(usdc), 300e6, owner))
        );
        uint256 rid = abi.decode(ret, (uint256));
        bal[address(usdc)][address(sa)] = 0;
        _serve(rid, 300e6, 300e6, address(sa), address(usdc));
        _submit();
        _payOut();
        assertEq(usdc.balanceOf(owner), 300e6);
    }
}
